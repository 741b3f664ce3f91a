//! The in-memory fakes the use-case and HTTP tests rely on follow the same contracts as the real
//! adapters: their conformance suites run here.

use relay_ports::DeliveryOutbox;
use relay_ports::conformance::OutboxFixture;
use relay_ports::fakes::InMemoryOutbox;

struct FakeOutbox(InMemoryOutbox);

#[async_trait::async_trait]
impl OutboxFixture for FakeOutbox {
    fn outbox(&self) -> &dyn DeliveryOutbox {
        &self.0
    }

    async fn dead_letters(&self) -> Vec<(Vec<u8>, String)> {
        self.0
            .dead_letters()
            .into_iter()
            .map(|(entry, reason)| (entry.payload, reason))
            .collect()
    }
}

relay_ports::outbox_conformance_tests!(FakeOutbox(InMemoryOutbox::new()));
