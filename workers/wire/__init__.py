"""What the gateway and the processes it starts share: frames and the messages they
carry, the errors a worker's failure becomes, span records, and the Linux process
controls both ends apply to themselves."""
