"""What runs inside a worker or a zygote: the serve loop, the model handler and its
codecs, the zygote's fork loop, joining its own limits, the model's spans. Imports only
``workers.wire`` and the standard library at start, so a worker starts light."""
