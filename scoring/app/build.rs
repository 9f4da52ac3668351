//! `sqlx::migrate!` (in `migrate.rs`) embeds `schema/migrations/` at compile time; without this, a migration added
//! after the last build would not be embedded until something else changed.
fn main() {
    println!("cargo:rerun-if-changed=../../schema/migrations");
}
