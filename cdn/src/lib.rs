//! `nexysync-cdn`: the file service. It stores and serves the encrypted blobs of shared
//! files and nothing else: no sessions, no project keys, no database.
//!
//! # Layout
//! - [`settings`]: the typed settings the binary fills in (listen address, storage, the
//!   URL-signing secret shared with the API).
//! - [`store`]: [`BlobStore`], the one storage interface, over `object_store`: local disk
//!   by default, S3-compatible object storage by configuration, in memory for tests.
//! - `routes`: `PUT`/`GET`/`HEAD`/`DELETE /v1/blobs/{project}/{file}`, each allowed only
//!   by a URL the API signed ([`nexysync_domain::blob_url`]).
//! - [`error`]: [`CdnError`], answered as `{ "error": { "code", "message" } }`.
//! - `startup`: [`Cdn::build`] binds; [`Cdn::run_until`] serves until shutdown;
//!   [`shutdown::signal`] is Ctrl-C or SIGTERM.
//!
//! # Invariants
//! - Every request carries a signature over its method, blob, expiry and size limit; it is
//!   compared in constant time and nothing is read or written without it.
//! - Bodies stream both ways: memory stays flat whatever the file size.
//! - An upload that is cut off, too large or whose SHA-256 differs from the signed one
//!   leaves nothing behind under the blob's name. One that is stored is answered with a
//!   receipt (size and SHA-256 as measured here, signed), and on local disk only once it
//!   is `fsync`ed under its name.
//! - The blobs are ciphertext: the file's key never reaches this service.

pub mod error;
mod routes;
pub mod settings;
pub mod shutdown;
mod startup;
pub mod store;

pub use error::CdnError;
pub use settings::{Settings, Storage};
pub use startup::Cdn;
pub use store::BlobStore;
