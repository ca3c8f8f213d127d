"""The local sandbox: real PostgreSQL, MariaDB, SeaweedFS S3 and sshd servers for the demo and the tests."""
