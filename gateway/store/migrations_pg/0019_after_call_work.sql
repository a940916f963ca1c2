-- Version 19: an agent's after-call work survives a restart of the gateway. Without it, the
-- queue pause the gateway sent ("after-call work") stayed on the PBX with nobody left to end
-- it, and the agent got no more queue calls until they touched their presence.
ALTER TABLE agent_presence ADD COLUMN after_call_until DOUBLE PRECISION;  -- ends at (epoch), NULL: none
ALTER TABLE agent_presence ADD COLUMN after_call_call TEXT;   -- the call it follows
