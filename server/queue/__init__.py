"""Queue: the spool (the single door for new mail) and the delivery scheduler."""
