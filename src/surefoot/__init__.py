"""surefoot: call third-party HTTP APIs without slipping."""
