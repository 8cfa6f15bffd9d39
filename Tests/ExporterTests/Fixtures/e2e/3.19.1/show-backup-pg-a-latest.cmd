barman -f json show-backup pg-a latest
