barman -f json --version
