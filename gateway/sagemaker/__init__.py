"""The SageMaker contract both planes speak: its errors, the scope and names of
resources, and production variants. Imports nothing of the gateway."""
