"""Backups: repository, encryption, compression, manifests."""
