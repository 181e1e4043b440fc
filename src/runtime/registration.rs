//! Whether glommio could register its I/O memory with io_uring. glommio
//! does not say so in its API; it logs a warning from `glommio::sys::uring`
//! on the executor's own thread when registration fails. This layer notes
//! that warning per thread, so each shard can report its own outcome.

use std::cell::Cell;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

thread_local! {
    static REGISTRATION_FAILED: Cell<bool> = const { Cell::new(false) };
}

pub struct RegistrationWatch;

impl<S: Subscriber> Layer<S> for RegistrationWatch {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() == Level::WARN && meta.target().starts_with("glommio::sys::uring") {
            REGISTRATION_FAILED.with(|f| f.set(true));
        }
    }
}

/// True unless glommio warned on this thread that registering buffers failed.
pub fn succeeded_on_this_thread() -> bool {
    !REGISTRATION_FAILED.with(|f| f.get())
}
