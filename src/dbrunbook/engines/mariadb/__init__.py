"""mariadb."""
