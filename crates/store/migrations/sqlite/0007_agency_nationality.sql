-- An agency's nationality: the one nationality its administrators may vouch for when they
-- create or change users (only operators vouch for others). Agencies created before this
-- have none until an operator sets it, so their administrators cannot set nationalities.
ALTER TABLE agencies ADD COLUMN nationality TEXT
    CHECK (nationality IS NULL OR (length(nationality) = 3 AND nationality = upper(nationality)));
