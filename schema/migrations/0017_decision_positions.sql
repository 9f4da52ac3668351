-- Where each payment happened, when its payment system said (the contract's `lat` and `lon`):
-- the console plots a card's recent positions.
ALTER TABLE decisions ADD COLUMN lat double precision, ADD COLUMN lon double precision;
