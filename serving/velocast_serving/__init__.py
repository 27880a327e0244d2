"""velocast serving sidecar: FastAPI app serving the champion model."""
