//! The first start of a fresh embedded store: a demo organization with one contact and one
//! secret, and a ready-to-paste request, so `just run` answers a `curl` with no setup.

use std::net::SocketAddr;
use std::sync::Arc;

use relay_domain::{OrgName, Region};
use relay_ports::Store;
use relay_usecase::{Admin, ContactImporter, RawContact};

/// Seeds "Demo Org" and prints its token (which exists in clear only in this output) and a
/// `curl` for `addr`.
///
/// # Errors
/// The store refuses a write.
#[allow(
    clippy::print_stdout,
    reason = "the demo's token and curl are for the person at the terminal"
)]
pub(crate) async fn seed(store: Arc<dyn Store>, addr: SocketAddr) -> anyhow::Result<()> {
    let admin = Admin::new(store.clone());
    let name = OrgName::parse("Demo Org").map_err(|e| anyhow::anyhow!(e))?;
    let region = Region::parse("CA").map_err(|e| anyhow::anyhow!(e))?;
    let org = admin.create_organization(&name, region).await?;
    let alex = RawContact {
        line: 1,
        first_name: Some("Alex".into()),
        last_name: Some("Morgan".into()),
        phone: Some("+14165550100".into()),
    };
    ContactImporter::new(store, 1)
        .import(&org, [Ok(alex)], |_| {})
        .await?;
    let issued = admin.issue_secret(org.id).await?;
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    println!(
        "\nFresh embedded store: seeded \"Demo Org\" (region CA) with the contact Alex Morgan, +14165550100.\n\
         Its tool secret is shown this once (`relay secret add {org}` makes another):\n\n    {token}\n\n\
         Try it:\n\n    curl -s http://{host}/api/webhook/elevenlabs/personalization \\\n      \
         -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n      \
         -d '{{\"conversation_id\":\"demo_1\",\"caller_id\":\"+14165550100\"}}'\n",
        org = org.id,
        token = issued.token.expose(),
    );
    Ok(())
}
