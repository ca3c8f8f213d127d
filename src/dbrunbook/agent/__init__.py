"""``dbrunbook-host``: the agent that runs on database hosts (archive_command, restore_command, backup and
restore streams). It starts fast and imports only what each subcommand needs: never invoke or fabric."""
