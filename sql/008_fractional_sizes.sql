-- 008: crypto pairs trade fractions of a coin (Alpaca answers `v: 0.01` for a BTC/USD minute,
-- bid and ask sizes like 0.3544): volumes and quote sizes hold fractions. Whole numbers keep
-- their value; equity volumes stay exact up to 2^53 shares.
ALTER TABLE bars ALTER COLUMN volume TYPE double precision;
ALTER TABLE quotes ALTER COLUMN bid_size TYPE double precision, ALTER COLUMN ask_size TYPE double precision;
