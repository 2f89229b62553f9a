"""A FastAPI backend for replyx-stack: the reference backend's API in Python (see README.md)."""
