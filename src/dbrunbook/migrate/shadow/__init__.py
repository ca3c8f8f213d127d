"""Online schema changes through a shadow table: copy in short chunks while triggers capture writes, prove the
copy with checksums, swap atomically, keep the old table in sync for a rollback window."""
