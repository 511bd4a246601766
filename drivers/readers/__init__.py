"""Fixed code readers (string results): Cognex DataMan DMCC, Keyence SR, and a configurable generic one."""
