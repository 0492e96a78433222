"""DNS: expected records (pure), the resolver adapter (the only dnspython user), the checker."""
