-- abort: give up a reservation (the upstream session could not be created).
-- ARGV: 1 reservation id.  Reply: 1 if it existed, 0 otherwise (idempotent).
if abort_resv(ARGV[1]) then return 1 end
return 0
