-- Version 11: each panel user's own settings, saved on the account so they follow the user
-- from desk to desk. language NULL means "the browser's language"; the panel's catalogs
-- (web/panel/assets/i18n/*.json) say which languages exist, so adding one needs no migration.
ALTER TABLE users ADD COLUMN language TEXT;
ALTER TABLE users ADD COLUMN notifications BIGINT NOT NULL DEFAULT 1;  -- desktop notifications
ALTER TABLE users ADD COLUMN ring_sound BIGINT NOT NULL DEFAULT 1;     -- ring tone in a background tab
ALTER TABLE users ADD COLUMN theme TEXT NOT NULL DEFAULT 'auto'
    CHECK (theme IN ('auto', 'light', 'dark'));
