barman -f json show-servers all
