"""The backup repository, engine-neutral: append-only storage (file and S3), the object pipeline (zstd, age,
digests), manifests and the catalog that trusts only signed ones, the host config a database host reads,
and the leases runs coordinate with. Nothing here knows PostgreSQL from MariaDB."""
