//! Integration tests of `keelson-config`: the golden `tests/ui` files, the repository's own
//! `plugins.toml`, and `file:` secrets on a real file system.

mod root_config;
mod secrets;
mod ui;
