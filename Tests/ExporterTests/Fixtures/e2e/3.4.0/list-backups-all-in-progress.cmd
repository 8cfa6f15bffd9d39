barman -f json list-backups all
