"""The hot path, in data-flow order: receive → channel → deliver → settle (docs/daemon.md)."""
