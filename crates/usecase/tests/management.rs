//! The management operations through their ports, on the in-memory fakes: who reaches what,
//! what the audit trail records, what a deletion takes with it, pages and conditions.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use relay_domain::{Actor, CallContext, ConversationId, E164, OrgId, Organization, ToolToken};
use relay_ports::fakes::{Behaviour, InMemoryCache, InMemoryStore};
use relay_ports::{CallContextCache, Entity};
use relay_usecase::{
    ContactInput, ContactPatch, ContactSearch, ManageError, Management, ManagementPorts, OrgChange,
    Principal,
};
use secrecy::SecretString;

struct World {
    store: InMemoryStore,
    cache: InMemoryCache,
    manage: Management,
    acme: Organization,
    other: Organization,
}

fn world() -> World {
    let store = InMemoryStore::new();
    let cache = InMemoryCache::new();
    let (acme, _) = store.add_org("Acme Corp", "CA");
    let (other, _) = store.add_org("Other Inc", "GB");
    let manage = Management::new(
        ManagementPorts {
            orgs: Arc::new(store.clone()),
            contacts: Arc::new(store.clone()),
            import: Arc::new(store.clone()),
            keys: Arc::new(store.clone()),
            audit: Arc::new(store.clone()),
            calls: Arc::new(store.clone()),
            cache: Arc::new(cache.clone()),
        },
        None,
    );
    World {
        store,
        cache,
        manage,
        acme,
        other,
    }
}

fn input(first: &str, phone: &str, external_id: Option<&str>) -> ContactInput {
    ContactInput {
        first_name: Some(first.into()),
        last_name: None,
        phone: phone.into(),
        external_id: external_id.map(str::to_owned),
    }
}

async fn key_of(w: &World, org: OrgId) -> (Principal, ToolToken) {
    let issued = w
        .manage
        .create_key(&Principal::CLI, Some(org), "crm")
        .await
        .expect("key");
    let principal = w
        .manage
        .authenticate(&issued.token)
        .await
        .expect("store")
        .expect("live key");
    (principal, issued.token)
}

#[tokio::test]
async fn a_key_reaches_its_own_organization_only_and_every_refusal_changes_nothing() {
    let w = world();
    let (acme_key, _) = key_of(&w, w.acme.id).await;
    let theirs = w
        .manage
        .create_contact(
            &Principal::CLI,
            w.other.id,
            input("Eve", "020 7946 0000", Some("e-1")),
        )
        .await
        .expect("contact");
    let (id, org) = (theirs.contact.id, w.other.id);
    let before = w.store.calls();
    let who = &acme_key;

    let refusals: Vec<(&str, Result<(), ManageError>)> = vec![
        ("get org", w.manage.organization(who, org).await.map(drop)),
        (
            "update org",
            w.manage
                .update_organization(
                    who,
                    org,
                    OrgChange {
                        name: Some("Mine".into()),
                        ..OrgChange::default()
                    },
                )
                .await
                .map(drop),
        ),
        ("delete org", w.manage.delete_organization(who, org).await),
        (
            "issue secret",
            w.manage.issue_secret(who, org).await.map(drop),
        ),
        (
            "list secrets",
            w.manage.list_secrets(who, org).await.map(drop),
        ),
        (
            "webhook secret",
            w.manage
                .set_webhook_secret(who, org, &SecretString::from("wsec_x".to_owned()))
                .await,
        ),
        (
            "create key",
            w.manage.create_key(who, Some(org), "mine").await.map(drop),
        ),
        (
            "list keys",
            w.manage.list_keys(who, Some(org)).await.map(drop),
        ),
        (
            "create contact",
            w.manage
                .create_contact(who, org, input("Mal", "020 7946 0001", None))
                .await
                .map(drop),
        ),
        (
            "get contact",
            w.manage.contact(who, org, id).await.map(drop),
        ),
        (
            "update contact",
            w.manage
                .update_contact(
                    who,
                    org,
                    id,
                    ContactPatch {
                        first_name: Some(Some("Mal".into())),
                        ..ContactPatch::default()
                    },
                    None,
                )
                .await
                .map(drop),
        ),
        (
            "put contact",
            w.manage
                .put_contact(who, org, "e-1", input("Mal", "020 7946 0001", None), None)
                .await
                .map(drop),
        ),
        (
            "delete contact",
            w.manage.delete_contact(who, org, id, None).await.map(drop),
        ),
        (
            "list contacts",
            w.manage
                .list_contacts(who, org, ContactSearch::default())
                .await
                .map(drop),
        ),
        (
            "list calls",
            w.manage
                .list_calls(who, org, None, None, None)
                .await
                .map(drop),
        ),
        (
            "audit",
            w.manage
                .audit_trail(who, Some(org), None, None)
                .await
                .map(drop),
        ),
    ];
    for (operation, result) in refusals {
        assert!(
            matches!(result, Err(ManageError::Forbidden(_))),
            "{operation}: {result:?}"
        );
    }
    assert_eq!(w.store.calls(), before, "no refusal reached the store");
    // Operator-only operations, even naming nothing of another organization.
    assert!(matches!(
        w.manage.create_organization(who, "Mine", "CA").await,
        Err(ManageError::Forbidden(_))
    ));
    assert!(matches!(
        w.manage.create_key(who, None, "root").await,
        Err(ManageError::Forbidden(_))
    ));
    assert!(matches!(
        w.manage.list_keys(who, None).await,
        Err(ManageError::Forbidden(_))
    ));
    let listed = w.manage.list_organizations(who).await.expect("list");
    assert_eq!(listed.iter().map(|o| o.id).collect::<Vec<_>>(), [w.acme.id]);
    let still = w
        .manage
        .contact(&Principal::CLI, org, id)
        .await
        .expect("untouched");
    assert_eq!(still, theirs);
}

#[tokio::test]
async fn another_organizations_key_cannot_be_revoked_and_a_revoked_key_authenticates_nothing() {
    let w = world();
    let (acme_key, _) = key_of(&w, w.acme.id).await;
    let (other_key, other_token) = key_of(&w, w.other.id).await;
    let Actor::Key(other_id) = other_key.actor else {
        panic!("a key's actor")
    };
    let refused = w.manage.revoke_key(&acme_key, other_id).await;
    assert!(
        matches!(refused, Err(ManageError::NotFound(Entity::Key))),
        "{refused:?}"
    );
    assert!(w.manage.authenticate(&other_token).await.unwrap().is_some());
    w.manage
        .revoke_key(&other_key, other_id)
        .await
        .expect("own key");
    assert_eq!(w.manage.authenticate(&other_token).await.unwrap(), None);
    // A tool secret (no management prefix) is never a management key, and costs no lookup.
    let before = w.store.calls();
    let tool = ToolToken::from_random_bytes(&[9; 32]);
    assert_eq!(w.manage.authenticate(&tool).await.unwrap(), None);
    assert_eq!(w.store.calls(), before);
}

#[tokio::test]
async fn every_change_is_audited_with_its_actor_and_an_identical_put_is_not_a_change() {
    let w = world();
    let (key, _) = key_of(&w, w.acme.id).await;
    let org = w.acme.id;
    let (created, _) = w
        .manage
        .put_contact(&key, org, "crm-1", input("Ada", "416 555 0100", None), None)
        .await
        .expect("put");
    w.manage
        .put_contact(&key, org, "crm-1", input("Ada", "416 555 0100", None), None)
        .await
        .expect("identical put");
    w.manage
        .update_contact(
            &key,
            org,
            created.contact.id,
            ContactPatch {
                phone: Some("416 555 0111".into()),
                ..ContactPatch::default()
            },
            Some(1),
        )
        .await
        .expect("patch");
    w.manage
        .delete_contact(&key, org, created.contact.id, None)
        .await
        .expect("delete");
    let trail = w
        .manage
        .audit_trail(&key, None, None, None)
        .await
        .expect("trail")
        .items;
    let actions: Vec<(&str, Actor)> = trail.iter().map(|e| (e.action.as_str(), e.actor)).collect();
    assert_eq!(
        actions,
        [
            ("contact.delete", key.actor),
            ("contact.update", key.actor),
            ("contact.create", key.actor),
            ("key.create", Actor::Cli),
        ]
    );
    assert!(trail.iter().all(|e| e.org_id == Some(org)));
    assert_eq!(
        trail[0].target.as_deref(),
        Some(created.contact.id.to_string().as_str())
    );
    assert_eq!(w.manage.audit_failures(), 0);
}

#[tokio::test]
async fn a_deleted_contact_takes_its_cached_contexts_and_memory_and_is_matched_no_more() {
    let w = world();
    let org = w.acme.id;
    let ada = w
        .manage
        .create_contact(&Principal::CLI, org, input("Ada", "(416) 555-0100", None))
        .await
        .expect("create");
    let phone = E164::parse_e164("+14165550100").unwrap();
    let context = CallContext {
        conversation_id: Some(ConversationId::parse("conv_1").unwrap()),
        call_sid: None,
        org_id: org,
        contact_id: Some(ada.contact.id),
        caller_number: Some(phone.clone()),
        called_number: None,
        agent_id: None,
        received_at: Utc::now(),
    };
    w.cache
        .put(&context, Duration::from_secs(60))
        .await
        .unwrap();
    let deleted = w
        .manage
        .delete_contact(&Principal::CLI, org, ada.contact.id, None)
        .await
        .expect("delete");
    assert_eq!(deleted.cached_contexts, Some(1));
    assert!(w.cache.is_empty());
    let page = w
        .manage
        .list_contacts(
            &Principal::CLI,
            org,
            ContactSearch {
                phone: Some("416-555-0100".into()),
                ..ContactSearch::default()
            },
        )
        .await
        .expect("list");
    assert!(page.items.is_empty());
    assert!(!w.store.has_memory(org, &phone));

    // A cache that cannot be reached does not undo or refuse the deletion.
    let bob = w
        .manage
        .create_contact(&Principal::CLI, org, input("Bob", "416 555 0101", None))
        .await
        .expect("create");
    w.cache.set_behaviour(Behaviour::Down);
    let deleted = w
        .manage
        .delete_contact(&Principal::CLI, org, bob.contact.id, None)
        .await
        .expect("delete");
    assert_eq!(deleted.cached_contexts, None);
}

#[tokio::test]
async fn contacts_page_with_opaque_cursors_and_numbers_are_searched_in_any_format() {
    let w = world();
    let org = w.acme.id;
    for i in 0..5 {
        w.manage
            .create_contact(
                &Principal::CLI,
                org,
                input(&format!("Ada{i}"), &format!("416 555 010{i}"), None),
            )
            .await
            .expect("create");
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = w
            .manage
            .list_contacts(
                &Principal::CLI,
                org,
                ContactSearch {
                    cursor: cursor.clone(),
                    limit: Some(2),
                    ..ContactSearch::default()
                },
            )
            .await
            .expect("page");
        seen.extend(page.items.iter().map(|c| c.contact.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    for phone in ["+1 416 555 0103", "(416) 555-0103", "4165550103"] {
        let page = w
            .manage
            .list_contacts(
                &Principal::CLI,
                org,
                ContactSearch {
                    phone: Some(phone.into()),
                    ..ContactSearch::default()
                },
            )
            .await
            .expect("search");
        assert_eq!(
            page.items
                .iter()
                .map(|c| c.contact.first_name.clone().unwrap())
                .collect::<Vec<_>>(),
            ["Ada3"],
            "{phone}"
        );
    }
    let nothing = w
        .manage
        .list_contacts(
            &Principal::CLI,
            org,
            ContactSearch {
                phone: Some("not a number".into()),
                ..ContactSearch::default()
            },
        )
        .await
        .expect("search");
    assert!(nothing.items.is_empty());
    for (cursor, limit) in [
        (Some("%%%".to_owned()), None),
        (None, Some(0)),
        (None, Some(501)),
    ] {
        let refused = w
            .manage
            .list_contacts(
                &Principal::CLI,
                org,
                ContactSearch {
                    cursor,
                    limit,
                    ..ContactSearch::default()
                },
            )
            .await;
        assert!(
            matches!(refused, Err(ManageError::Invalid { .. })),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn a_stale_version_or_a_bad_field_changes_nothing() {
    let w = world();
    let org = w.acme.id;
    let ada = w
        .manage
        .create_contact(
            &Principal::CLI,
            org,
            input("Ada", "416 555 0100", Some("crm-1")),
        )
        .await
        .expect("create");
    let stale = w
        .manage
        .update_contact(
            &Principal::CLI,
            org,
            ada.contact.id,
            ContactPatch {
                first_name: Some(Some("Eve".into())),
                ..ContactPatch::default()
            },
            Some(7),
        )
        .await;
    assert!(
        matches!(stale, Err(ManageError::VersionMismatch(Entity::Contact))),
        "{stale:?}"
    );
    for (patch, field) in [
        (
            ContactPatch {
                phone: Some("12".into()),
                ..ContactPatch::default()
            },
            "phone",
        ),
        (
            ContactPatch {
                first_name: Some(Some("x".repeat(201))),
                ..ContactPatch::default()
            },
            "first_name",
        ),
        (
            ContactPatch {
                external_id: Some(Some(" padded".into())),
                ..ContactPatch::default()
            },
            "external_id",
        ),
    ] {
        let refused = w
            .manage
            .update_contact(&Principal::CLI, org, ada.contact.id, patch, None)
            .await;
        assert!(
            matches!(&refused, Err(ManageError::Invalid { field: f, .. }) if *f == field),
            "{refused:?}"
        );
    }
    let taken = w
        .manage
        .create_contact(
            &Principal::CLI,
            org,
            input("Bob", "416 555 0101", Some("crm-1")),
        )
        .await;
    assert!(
        matches!(taken, Err(ManageError::ExternalIdTaken)),
        "{taken:?}"
    );
    let cleared = w
        .manage
        .update_contact(
            &Principal::CLI,
            org,
            ada.contact.id,
            ContactPatch {
                external_id: Some(None),
                ..ContactPatch::default()
            },
            Some(1),
        )
        .await
        .expect("clear the external id");
    assert_eq!((cleared.external_id, cleared.version), (None, 2));
    assert_eq!(cleared.contact.first_name.as_deref(), Some("Ada"), "kept");
}

#[tokio::test]
async fn organizations_change_field_by_field_and_a_bad_field_changes_none() {
    let w = world();
    let org = w.acme.id;
    let refused = w
        .manage
        .update_organization(
            &Principal::CLI,
            org,
            OrgChange {
                name: Some("Acme Two".into()),
                default_region: Some("ZZZ".into()),
                ..OrgChange::default()
            },
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(ManageError::Invalid {
                field: "default_region",
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        w.manage
            .organization(&Principal::CLI, org)
            .await
            .unwrap()
            .name
            .as_str(),
        "Acme Corp"
    );
    let changed = w
        .manage
        .update_organization(
            &Principal::CLI,
            org,
            OrgChange {
                name: Some("Acme Two".into()),
                default_region: Some("GB".into()),
                unknown_caller_name: Some("friend".into()),
                memory_retention_days: Some(30),
                memory_unknown_callers: None,
            },
        )
        .await
        .expect("update");
    assert_eq!(changed.name.as_str(), "Acme Two");
    assert_eq!(changed.default_region.code(), "GB");
    assert_eq!(changed.unknown_caller_name.as_str(), "friend");
    assert_eq!(changed.memory.retention_days, 30);
    assert_eq!(
        changed.memory.unknown_callers,
        w.acme.memory.unknown_callers
    );
    let created = w
        .manage
        .create_organization(&Principal::CLI, "Third", "US")
        .await
        .expect("create");
    w.manage
        .delete_organization(&Principal::CLI, created.id)
        .await
        .expect("delete");
    assert!(matches!(
        w.manage.organization(&Principal::CLI, created.id).await,
        Err(ManageError::NotFound(Entity::Organization))
    ));
}

#[tokio::test]
async fn a_patch_without_a_number_keeps_the_stored_one_whatever_the_region_is_now() {
    let w = world();
    let org = w.acme.id;
    let alex = w
        .manage
        .create_contact(&Principal::CLI, org, input("Alex", "(416) 555-0100", None))
        .await
        .expect("create");
    for region in ["DE", "LS"] {
        w.manage
            .update_organization(
                &Principal::CLI,
                org,
                OrgChange {
                    default_region: Some(region.into()),
                    ..OrgChange::default()
                },
            )
            .await
            .expect("region");
        let renamed = w
            .manage
            .update_contact(
                &Principal::CLI,
                org,
                alex.contact.id,
                ContactPatch {
                    first_name: Some(Some(format!("Sam{region}"))),
                    ..ContactPatch::default()
                },
                None,
            )
            .await
            .expect("a name-only patch");
        assert_eq!(renamed.contact.phone.as_str(), "+14165550100", "{region}");
        assert_eq!(renamed.phone_raw, "(416) 555-0100", "{region}");
    }
}

#[tokio::test]
async fn an_organization_name_is_stored_as_typed_or_refused_on_create_as_on_update() {
    let w = world();
    for name in [" Acme ", "Acme  Two", "{{x}}"] {
        let created = w
            .manage
            .create_organization(&Principal::CLI, name, "CA")
            .await;
        assert!(
            matches!(created, Err(ManageError::Invalid { field: "name", .. })),
            "{name:?}: {created:?}"
        );
        let renamed = w
            .manage
            .update_organization(
                &Principal::CLI,
                w.acme.id,
                OrgChange {
                    name: Some(name.into()),
                    ..OrgChange::default()
                },
            )
            .await;
        assert!(
            matches!(renamed, Err(ManageError::Invalid { field: "name", .. })),
            "{name:?}: {renamed:?}"
        );
    }
}

#[tokio::test]
async fn a_change_whose_audit_entry_cannot_be_written_stands_and_is_counted() {
    let store = InMemoryStore::new();
    let (acme, _) = store.add_org("Acme Corp", "CA");
    let mut audit = relay_ports::MockAuditLog::new();
    audit.expect_append_audit().returning(|_| {
        Err(relay_ports::RepositoryError::Unavailable(
            "audit table locked".into(),
        ))
    });
    let manage = Management::new(
        ManagementPorts {
            orgs: Arc::new(store.clone()),
            contacts: Arc::new(store.clone()),
            import: Arc::new(store.clone()),
            keys: Arc::new(store.clone()),
            audit: Arc::new(audit),
            calls: Arc::new(store.clone()),
            cache: Arc::new(InMemoryCache::new()),
        },
        None,
    );
    let created = manage
        .create_contact(&Principal::CLI, acme.id, input("Ada", "416 555 0100", None))
        .await
        .expect("the change stands");
    assert_eq!(manage.audit_failures(), 1);
    assert!(
        manage
            .contact(&Principal::CLI, acme.id, created.contact.id)
            .await
            .is_ok()
    );
}
