//! Every branch of "personalize this call", with mockall mocks for the ports' answers and the
//! in-memory fakes where time or state matters. Time-based tests run on tokio's paused clock, so
//! they check the budget exactly without waiting for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use relay_domain::{
    CallContext, Contact, ContactId, ConversationId, E164, OrgId, OrgName, Organization,
    PhoneError, Region, ToolToken,
};
use relay_ports::fakes::{Behaviour, InMemoryCache, InMemoryStore};
use relay_ports::{
    CacheError, CallContextCache, Caller, ContactDirectory, MockCallContextCache,
    MockContactDirectory, MockOrganizationDirectory, OrganizationDirectory, RepositoryError,
};
use relay_usecase::{
    AnswerOutcome, DependencyFailure, KnownCredentials, MatchResult, MemoryOutcome,
    PersonalizationRequest, PersonalizeCall, RetryPolicy, Unauthorized,
};
use tokio::time::Instant;

const BUDGET: Duration = Duration::from_millis(800);

fn org() -> Organization {
    Organization {
        id: OrgId::from_uuid(uuid::Uuid::from_u128(42)),
        name: OrgName::parse("Acme Corp").unwrap(),
        default_region: Region::parse("CA").unwrap(),
        unknown_caller_name: relay_domain::FallbackName::default(),
        memory: relay_domain::MemorySettings::default(),
    }
}

fn contact(org: &Organization) -> Contact {
    Contact {
        id: ContactId::from_uuid(uuid::Uuid::from_u128(7)),
        org_id: org.id,
        first_name: Some("Alex".into()),
        last_name: Some("Morgan".into()),
        phone: E164::parse_e164("+14165550100").unwrap(),
        updated_at: Utc::now(),
    }
}

fn token() -> ToolToken {
    ToolToken::from_random_bytes(&[1; 32])
}

fn request(caller_id: Option<&str>) -> PersonalizationRequest {
    PersonalizationRequest {
        conversation_id: Some(ConversationId::parse("conv_1").unwrap()),
        call_sid: None,
        caller_id: caller_id.map(str::to_owned),
        called_number: Some("+12362320246".into()),
        agent_id: Some("agent_1".into()),
    }
}

fn orgs_finding(org: Option<Organization>) -> MockOrganizationDirectory {
    let mut orgs = MockOrganizationDirectory::new();
    let digest = token().digest();
    orgs.expect_find_by_secret_digest()
        .withf(move |d| *d == digest)
        .times(1)
        .returning(move |_| Ok(org.clone()));
    orgs
}

/// A cache mock that records what was written.
/// What a recording cache was asked to store: each context with its TTL.
type Written = Arc<Mutex<Vec<(CallContext, Duration)>>>;

fn recording_cache() -> (MockCallContextCache, Written) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&written);
    let mut cache = MockCallContextCache::new();
    cache.expect_put().returning(move |ctx, ttl| {
        sink.lock().unwrap().push((ctx.clone(), ttl));
        Ok(())
    });
    (cache, written)
}

fn service(
    orgs: impl OrganizationDirectory + 'static,
    contacts: impl ContactDirectory + 'static,
    cache: impl CallContextCache + 'static,
) -> PersonalizeCall {
    service_over(orgs, Arc::new(contacts), cache)
}

/// [`service`] over a contact directory the test keeps a handle on.
fn service_over(
    orgs: impl OrganizationDirectory + 'static,
    contacts: Arc<dyn ContactDirectory>,
    cache: impl CallContextCache + 'static,
) -> PersonalizeCall {
    PersonalizeCall::new(
        Arc::new(orgs),
        contacts,
        Arc::new(cache),
        BUDGET,
        RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(100),
            attempt_timeout: Duration::from_millis(500),
            max_pending: 2,
        },
        Arc::new(KnownCredentials::new(Duration::from_secs(60), 100)),
    )
}

#[tokio::test]
async fn unknown_or_revoked_token_is_unauthorized_and_touches_nothing_else() {
    let mut contacts = MockContactDirectory::new();
    contacts.expect_find_caller().never();
    let mut cache = MockCallContextCache::new();
    cache.expect_put().never();
    let svc = service(orgs_finding(None), contacts, cache);

    assert_eq!(
        svc.personalize(&token(), request(Some("+14165550100")))
            .await,
        Err(Unauthorized)
    );
}

#[tokio::test]
async fn matched_caller_gets_variables_and_context_is_cached_for_a_day() {
    let org = org();
    let contact = contact(&org);
    let mut contacts = MockContactDirectory::new();
    let found = contact.clone();
    contacts
        .expect_find_caller()
        .withf(move |o, phone, _| {
            *o == org.id && *phone == E164::parse_e164("+14165550100").unwrap()
        })
        .times(1)
        .returning(move |_, _, _| {
            Ok(Caller {
                contact: Some(found.clone()),
                memory: Ok(None),
            })
        });
    let (cache, written) = recording_cache();
    let svc = service(orgs_finding(Some(org.clone())), contacts, cache);

    let answer = svc
        .personalize(&token(), request(Some("(416) 555-0100")))
        .await
        .unwrap();

    assert_eq!(answer.outcome(), AnswerOutcome::Matched);
    assert_eq!(answer.matched, MatchResult::Matched(contact.id));
    assert_eq!(answer.variables.caller_name.as_deref(), Some("Alex Morgan"));
    assert_eq!(
        answer.variables.caller_number.as_deref(),
        Some("+14165550100")
    );
    assert_eq!(answer.variables.org_name.as_deref(), Some("Acme Corp"));
    let written = written.lock().unwrap();
    assert_eq!(written.len(), 1);
    let (ctx, ttl) = &written[0];
    assert_eq!(*ttl, Duration::from_secs(86_400));
    assert_eq!(ctx.conversation_id.as_ref().unwrap().as_str(), "conv_1");
    assert_eq!(ctx.org_id, org.id);
    assert_eq!(ctx.contact_id, Some(contact.id));
    assert_eq!(
        ctx.caller_number.as_ref().map(E164::as_str),
        Some("+14165550100")
    );
    assert_eq!(ctx.called_number.as_deref(), Some("+12362320246"));
    assert_eq!(ctx.agent_id.as_deref(), Some("agent_1"));
    assert!(Utc::now() - ctx.received_at < TimeDelta::seconds(5));
}

#[tokio::test]
async fn missing_caller_id_answers_empty_but_still_caches_the_context() {
    let mut contacts = MockContactDirectory::new();
    contacts.expect_find_caller().never();
    let (cache, written) = recording_cache();
    let svc = service(orgs_finding(Some(org())), contacts, cache);

    let answer = svc.personalize(&token(), request(None)).await.unwrap();

    assert!(answer.variables.is_empty());
    assert_eq!(
        answer.matched,
        MatchResult::NoCallerNumber(PhoneError::Empty)
    );
    assert_eq!(answer.outcome(), AnswerOutcome::NoMatch);
    let written = written.lock().unwrap();
    assert_eq!(written[0].0.contact_id, None);
    assert_eq!(written[0].0.caller_number, None);
}

#[tokio::test]
async fn withheld_and_invalid_caller_ids_never_reach_the_store() {
    for (raw, reason) in [
        ("anonymous", PhoneError::Anonymous),
        ("+266696687", PhoneError::Anonymous),
        ("12", PhoneError::Invalid),
        ("", PhoneError::Empty),
    ] {
        let mut contacts = MockContactDirectory::new();
        contacts.expect_find_caller().never();
        let (cache, _) = recording_cache();
        let svc = service(orgs_finding(Some(org())), contacts, cache);
        let answer = svc.personalize(&token(), request(Some(raw))).await.unwrap();
        assert!(answer.variables.is_empty(), "{raw}");
        assert_eq!(answer.matched, MatchResult::NoCallerNumber(reason), "{raw}");
    }
}

#[tokio::test]
async fn unknown_caller_answers_empty_and_caches_the_number() {
    let mut contacts = MockContactDirectory::new();
    contacts.expect_find_caller().times(1).returning(|_, _, _| {
        Ok(Caller {
            contact: None,
            memory: Ok(None),
        })
    });
    let (cache, written) = recording_cache();
    let svc = service(orgs_finding(Some(org())), contacts, cache);

    let answer = svc
        .personalize(&token(), request(Some("+1 416 555 0199")))
        .await
        .unwrap();

    assert!(answer.variables.is_empty());
    assert_eq!(answer.matched, MatchResult::UnknownCaller);
    assert_eq!(answer.outcome(), AnswerOutcome::NoMatch);
    assert_eq!(
        written.lock().unwrap()[0]
            .0
            .caller_number
            .as_ref()
            .map(E164::as_str),
        Some("+14165550199")
    );
}

#[tokio::test]
async fn several_contacts_with_one_number_answer_the_most_recently_updated() {
    let store = InMemoryStore::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Old"), Some("Entry"), "+14165550100");
    std::thread::sleep(Duration::from_millis(2));
    store.add_contact(org.id, Some("New"), Some("Entry"), "+14165550100");
    let svc = service(store.clone(), store, InMemoryCache::new());

    let req = request(Some("4165550100"));
    let answer = svc.personalize(&token, req).await.unwrap();
    assert_eq!(answer.variables.caller_name.as_deref(), Some("New Entry"));
}

#[tokio::test]
async fn a_token_never_reveals_another_organizations_contact() {
    let store = InMemoryStore::new();
    let (acme, acme_token) = store.add_org("Acme Corp", "CA");
    let (globex, _) = store.add_org("Globex", "CA");
    store.add_contact(globex.id, Some("Secret"), Some("Person"), "+14165550100");
    let cache = InMemoryCache::new();
    let svc = service(store.clone(), store, cache.clone());

    let req = request(Some("+14165550100"));
    let answer = svc.personalize(&acme_token, req).await.unwrap();

    assert!(answer.variables.is_empty());
    assert_eq!(answer.matched, MatchResult::UnknownCaller);
    let (ctx, _) = cache.entry("conv_1").unwrap();
    assert_eq!(ctx.org_id, acme.id);
    assert_eq!(ctx.contact_id, None);
}

#[tokio::test]
async fn store_error_on_token_check_answers_empty_without_caching() {
    let mut orgs = MockOrganizationDirectory::new();
    orgs.expect_find_by_secret_digest()
        .returning(|_| Err(RepositoryError::Unavailable("connection refused".into())));
    let mut contacts = MockContactDirectory::new();
    contacts.expect_find_caller().never();
    let mut cache = MockCallContextCache::new();
    cache.expect_put().never();
    let svc = service(orgs, contacts, cache);

    let answer = svc
        .personalize(&token(), request(Some("+14165550100")))
        .await
        .unwrap();

    assert!(answer.variables.is_empty());
    assert_eq!(answer.store_failure, Some(DependencyFailure::Error));
    assert_eq!(answer.org_id(), None);
    assert_eq!(answer.outcome(), AnswerOutcome::Degraded);
}

#[tokio::test]
async fn store_error_on_contact_lookup_answers_empty_and_caches_what_is_known() {
    let mut contacts = MockContactDirectory::new();
    contacts
        .expect_find_caller()
        .returning(|_, _, _| Err(RepositoryError::Unavailable("connection reset".into())));
    let (cache, written) = recording_cache();
    let svc = service(orgs_finding(Some(org())), contacts, cache);

    let answer = svc
        .personalize(&token(), request(Some("+14165550100")))
        .await
        .unwrap();

    assert!(answer.variables.is_empty());
    assert_eq!(answer.matched, MatchResult::Unknown);
    assert_eq!(answer.store_failure, Some(DependencyFailure::Error));
    assert_eq!(answer.outcome(), AnswerOutcome::Degraded);
    let written = written.lock().unwrap();
    assert_eq!(written[0].0.org_id, org().id);
    assert_eq!(written[0].0.contact_id, None);
}

#[tokio::test(start_paused = true)]
async fn hung_store_answers_empty_when_the_budget_runs_out() {
    let store = InMemoryStore::new();
    let (_, token) = store.add_org("Acme Corp", "CA");
    store.set_behaviour(Behaviour::Slow(Duration::from_secs(3600)));
    let cache = InMemoryCache::new();
    let svc = service(store.clone(), store, cache.clone());

    let started = Instant::now();
    let req = request(Some("+14165550100"));
    let answer = svc.personalize(&token, req).await.unwrap();

    assert_eq!(started.elapsed(), BUDGET);
    assert!(answer.variables.is_empty());
    assert_eq!(answer.store_failure, Some(DependencyFailure::Timeout));
    assert_eq!(
        cache.puts(),
        0,
        "the organization is unknown, so nothing is cached"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_contact_lookup_shares_the_budget_with_the_token_check() {
    let store = InMemoryStore::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Alex"), None, "+14165550100");
    // Each store call takes 500 ms: the token check fits in 800 ms, the contact lookup does not.
    store.set_behaviour(Behaviour::Slow(Duration::from_millis(500)));
    let svc = service(store.clone(), store, InMemoryCache::new());

    let started = Instant::now();
    let req = request(Some("+14165550100"));
    let answer = svc.personalize(&token, req).await.unwrap();

    assert_eq!(started.elapsed(), BUDGET);
    assert_eq!(answer.store_failure, Some(DependencyFailure::Timeout));
    assert!(answer.variables.is_empty());
}

#[tokio::test(start_paused = true)]
async fn cache_error_still_answers_the_variables_and_retries_in_the_background() {
    let store = InMemoryStore::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Alex"), Some("Morgan"), "+14165550100");
    let cache = InMemoryCache::new();
    cache.set_behaviour(Behaviour::Down);
    let svc = service(store.clone(), store, cache.clone());

    let req = request(Some("+14165550100"));
    let answer = svc.personalize(&token, req).await.unwrap();

    assert_eq!(answer.variables.caller_name.as_deref(), Some("Alex Morgan"));
    assert_eq!(answer.cache_failure, Some(DependencyFailure::Error));
    assert_eq!(answer.outcome(), AnswerOutcome::Degraded);
    assert!(cache.is_empty());

    // Redis comes back before the first retry: the context lands after all.
    cache.set_behaviour(Behaviour::Healthy);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (ctx, ttl) = cache.entry("conv_1").expect("context written by the retry");
    assert_eq!(ctx.org_id, org.id);
    assert_eq!(ttl, CallContext::TTL);
    let stats = svc.background_stats();
    assert_eq!(
        (stats.retried(), stats.recovered(), stats.dropped()),
        (1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn hung_cache_answers_within_the_budget_and_gives_up_after_bounded_retries() {
    let store = InMemoryStore::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Alex"), None, "+14165550100");
    let cache = InMemoryCache::new();
    cache.set_behaviour(Behaviour::Slow(Duration::from_secs(3600)));
    let svc = service(store.clone(), store, cache.clone());

    let started = Instant::now();
    let req = request(Some("+14165550100"));
    let answer = svc.personalize(&token, req).await.unwrap();
    assert_eq!(started.elapsed(), BUDGET);
    assert_eq!(answer.variables.caller_name.as_deref(), Some("Alex"));
    assert_eq!(answer.cache_failure, Some(DependencyFailure::Timeout));

    assert_eq!(
        svc.drain_background_writes(Duration::from_secs(60)).await,
        0
    );
    assert_eq!(
        cache.puts(),
        1 + 3,
        "one write on the request path, three retries"
    );
    let stats = svc.background_stats();
    assert_eq!(
        (stats.retried(), stats.recovered(), stats.dropped()),
        (1, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn pending_retries_are_bounded_and_the_excess_is_counted_as_dropped() {
    let mut cache = MockCallContextCache::new();
    cache
        .expect_put()
        .returning(|_, _| Err(CacheError::Unavailable("down".into())));
    let mut orgs = MockOrganizationDirectory::new();
    orgs.expect_find_by_secret_digest()
        .returning(|_| Ok(Some(org())));
    let svc = service(orgs, MockContactDirectory::new(), cache);

    for _ in 0..3 {
        svc.personalize(&token(), request(None)).await.unwrap();
    }
    // max_pending is 2: the third write is dropped at once.
    let stats = svc.background_stats();
    assert_eq!((stats.retried(), stats.dropped()), (3, 1));
    svc.drain_background_writes(Duration::from_secs(60)).await;
    assert_eq!(stats.dropped(), 3);
}

/// A completed call of `number` in `org`, recorded with memory as the post-call route does.
async fn remembered_call(store: &InMemoryStore, org: OrgId, number: &str, summary: &str) {
    use relay_ports::CallLog as _;
    let at = Utc::now() - TimeDelta::days(3) - TimeDelta::hours(1);
    let record = relay_domain::CallRecord {
        id: relay_domain::CallId::from_uuid(uuid::Uuid::new_v4()),
        org_id: org,
        contact_id: None,
        conversation_id: ConversationId::parse(format!("conv_{}", uuid::Uuid::new_v4())).unwrap(),
        call_sid: None,
        agent_id: None,
        kind: relay_domain::CallKind::Completed,
        direction: Some("inbound".into()),
        external_number: Some(number.into()),
        caller: Some(E164::parse_e164(number).unwrap()),
        agent_number: None,
        status: Some("done".into()),
        call_successful: Some("success".into()),
        summary: Some(summary.into()),
        duration_secs: Some(60),
        started_at: None,
        event_at: at,
        received_at: at,
    };
    assert!(store.record_call(&record, true).await.unwrap().inserted);
}

#[tokio::test]
async fn a_returning_contact_gets_the_memory_beside_the_name() {
    let store = InMemoryStore::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Alex"), Some("Morgan"), "+14165550100");
    remembered_call(
        &store,
        org.id,
        "+14165550100",
        "Asked about\n{{the}} invoice.",
    )
    .await;
    let svc = service(store.clone(), store, InMemoryCache::new());

    let answer = svc
        .personalize(&token, request(Some("416 555 0100")))
        .await
        .unwrap();

    assert_eq!(answer.memory, Some(MemoryOutcome::Remembered));
    assert_eq!(answer.variables.caller_name.as_deref(), Some("Alex Morgan"));
    let memory = answer.variables.memory.expect("memory variables");
    assert!(memory.is_returning_caller);
    assert_eq!(memory.previous_calls, 1);
    assert_eq!(memory.last_call_ago, "3 days ago");
    assert_eq!(memory.last_call_summary, "Asked about the invoice.");
    assert_eq!(memory.last_call_outcome, "success");
}

#[tokio::test]
async fn an_unreadable_memory_costs_the_memory_only_never_the_name() {
    let store = InMemoryStore::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Alex"), None, "+14165550100");
    remembered_call(&store, org.id, "+14165550100", "Anything").await;
    store.break_memory(org.id, &E164::parse_e164("+14165550100").unwrap());
    let svc = service(store.clone(), store, InMemoryCache::new());

    let answer = svc
        .personalize(&token, request(Some("+14165550100")))
        .await
        .unwrap();

    assert_eq!(answer.memory, Some(MemoryOutcome::Unreadable));
    assert_eq!(
        answer.outcome(),
        AnswerOutcome::Matched,
        "not degraded: the name is there"
    );
    assert_eq!(answer.variables.caller_name.as_deref(), Some("Alex"));
    assert_eq!(answer.variables.memory, None);
}

#[tokio::test]
async fn a_stranger_is_remembered_only_where_the_organization_says_so() {
    use relay_ports::OrganizationAdmin as _;
    let store = InMemoryStore::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    remembered_call(&store, org.id, "+14165550199", "Wanted a quote").await;
    let svc = service(store.clone(), store.clone(), InMemoryCache::new());

    let by_default = svc
        .personalize(&token, request(Some("+14165550199")))
        .await
        .unwrap();
    assert_eq!(serde_json::to_string(&by_default.variables).unwrap(), "{}");
    assert_eq!(by_default.memory, Some(MemoryOutcome::Off));

    store
        .set_memory(org.id, relay_domain::MemorySettings::new(90, true).unwrap())
        .await
        .unwrap();
    let svc = service(store.clone(), store.clone(), InMemoryCache::new());
    let remembered = svc
        .personalize(&token, request(Some("+14165550199")))
        .await
        .unwrap();
    assert_eq!(remembered.memory, Some(MemoryOutcome::Remembered));
    assert_eq!(remembered.matched, MatchResult::UnknownCaller);
    assert_eq!(remembered.variables.caller_name, None);
    assert_eq!(
        remembered.variables.memory.unwrap().last_call_summary,
        "Wanted a quote"
    );

    let never_called = svc
        .personalize(&token, request(Some("+14165550123")))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_string(&never_called.variables).unwrap(),
        "{}",
        "a stranger with no history still gets {{}}"
    );
    assert_eq!(never_called.memory, Some(MemoryOutcome::None));
}

#[tokio::test]
async fn memory_off_and_memory_past_the_window_read_nothing() {
    use relay_ports::OrganizationAdmin as _;
    let store = InMemoryStore::new();
    let (org, token) = store.add_org("Acme Corp", "CA");
    store.add_contact(org.id, Some("Alex"), None, "+14165550100");
    remembered_call(&store, org.id, "+14165550100", "Old news").await;

    store
        .set_memory(org.id, relay_domain::MemorySettings::new(2, false).unwrap())
        .await
        .unwrap();
    let svc = service(store.clone(), store.clone(), InMemoryCache::new());
    let past = svc
        .personalize(&token, request(Some("+14165550100")))
        .await
        .unwrap();
    assert_eq!(
        past.memory,
        Some(MemoryOutcome::None),
        "the call was 3 days ago"
    );
    assert_eq!(past.variables.memory, None);

    store
        .set_memory(org.id, relay_domain::MemorySettings::new(0, false).unwrap())
        .await
        .unwrap();
    let svc = service(store.clone(), store, InMemoryCache::new());
    let off = svc
        .personalize(&token, request(Some("+14165550100")))
        .await
        .unwrap();
    assert_eq!(off.memory, Some(MemoryOutcome::Off));
    assert_eq!(off.variables.caller_name.as_deref(), Some("Alex"));
    assert_eq!(off.variables.memory, None);
}

/// A contact directory over a map, counting lookups: the fast-path tests look numbers up
/// thousands of times, and a fake that scans every contact would make that quadratic.
#[derive(Default)]
struct MapDirectory {
    contacts: std::collections::HashMap<(OrgId, E164), Contact>,
    lookups: Mutex<Vec<E164>>,
}

#[async_trait::async_trait]
impl ContactDirectory for MapDirectory {
    async fn find_by_phone(
        &self,
        org: OrgId,
        phone: &E164,
    ) -> Result<Option<Contact>, RepositoryError> {
        Ok(self.contacts.get(&(org, phone.clone())).cloned())
    }

    async fn find_caller(
        &self,
        org: OrgId,
        phone: &E164,
        _memory_since: Option<chrono::DateTime<Utc>>,
    ) -> Result<Caller, RepositoryError> {
        self.lookups.lock().unwrap().push(phone.clone());
        Ok(Caller {
            contact: self.find_by_phone(org, phone).await?,
            memory: Ok(None),
        })
    }
}

impl MapDirectory {
    fn add(&mut self, org: OrgId, phone: E164) -> ContactId {
        let id = ContactId::from_uuid(uuid::Uuid::new_v4());
        self.contacts
            .entry((org, phone.clone()))
            .or_insert(Contact {
                id,
                org_id: org,
                first_name: Some("Alex".into()),
                last_name: None,
                phone,
                updated_at: Utc::now(),
            });
        id
    }

    fn lookups(&self) -> Vec<String> {
        let lookups = self.lookups.lock().unwrap();
        lookups.iter().map(|n| n.as_str().to_owned()).collect()
    }
}

fn org_in(region: &str) -> Organization {
    Organization {
        default_region: Region::parse(region).unwrap(),
        ..org()
    }
}

fn e164(s: &str) -> E164 {
    E164::parse_e164(s).unwrap()
}

#[tokio::test]
async fn a_caller_id_written_as_e164_is_matched_with_one_lookup_of_it_as_written() {
    let org = org();
    let mut directory = MapDirectory::default();
    let alex = directory.add(org.id, e164("+14165550100"));
    let directory = Arc::new(directory);
    let (cache, written) = recording_cache();
    let svc = service_over(
        orgs_finding(Some(org.clone())),
        Arc::clone(&directory) as Arc<dyn ContactDirectory>,
        cache,
    );

    let answer = svc
        .personalize(&token(), request(Some(" +14165550100 ")))
        .await
        .unwrap();

    assert_eq!(answer.matched, MatchResult::Matched(alex));
    assert_eq!(answer.variables.caller_name.as_deref(), Some("Alex"));
    assert_eq!(directory.lookups(), ["+14165550100"]);
    assert_eq!(
        written.lock().unwrap()[0].0.caller_number,
        Some(e164("+14165550100"))
    );
}

/// Each caller id the fast path cannot settle (no contact has it as written) is read by the
/// parser, and the answer is the parser's: another number looked up, or no number at all.
#[tokio::test]
async fn a_written_caller_id_no_contact_has_is_answered_as_the_parser_reads_it() {
    let gb = org_in("GB");
    let mut directory = MapDirectory::default();
    let london = directory.add(gb.id, e164("+442079460958"));
    let directory = Arc::new(directory);
    for (raw, matched, number, lookups) in [
        // The trunk prefix kept after the country code: the parser drops it, the contact
        // matches on the second lookup.
        (
            "+4402079460958",
            MatchResult::Matched(london),
            Some("+442079460958"),
            &["+4402079460958", "+442079460958"][..],
        ),
        // Valid and no contact's: the first lookup's answer is reused.
        (
            "+442079460959",
            MatchResult::UnknownCaller,
            Some("+442079460959"),
            &["+442079460959"][..],
        ),
        // E.164 in shape, not a number: refused as the parser refuses it.
        (
            "+10000000000",
            MatchResult::NoCallerNumber(PhoneError::Invalid),
            None,
            &["+10000000000"][..],
        ),
    ] {
        directory.lookups.lock().unwrap().clear();
        let (cache, written) = recording_cache();
        let svc = service_over(
            orgs_finding(Some(gb.clone())),
            Arc::clone(&directory) as Arc<dyn ContactDirectory>,
            cache,
        );
        let answer = svc.personalize(&token(), request(Some(raw))).await.unwrap();
        assert_eq!(answer.matched, matched, "{raw}");
        assert_eq!(
            answer.caller_number.as_ref().map(E164::as_str),
            number,
            "{raw}"
        );
        assert_eq!(directory.lookups(), lookups, "{raw}");
        assert_eq!(
            written.lock().unwrap()[0]
                .0
                .caller_number
                .as_ref()
                .map(E164::as_str),
            number,
            "{raw}"
        );
    }
}

#[tokio::test]
async fn a_failed_fast_lookup_of_an_invalid_number_is_no_store_failure() {
    let mut contacts = MockContactDirectory::new();
    contacts
        .expect_find_caller()
        .times(1)
        .returning(|_, _, _| Err(RepositoryError::Unavailable("down".into())));
    let (cache, _) = recording_cache();
    let svc = service(orgs_finding(Some(org())), contacts, cache);

    let answer = svc
        .personalize(&token(), request(Some("+10000000000")))
        .await
        .unwrap();

    // What parsing first gives: no number, so no lookup to fail.
    assert_eq!(
        answer.matched,
        MatchResult::NoCallerNumber(PhoneError::Invalid)
    );
    assert_eq!(answer.store_failure, None);
    assert_eq!(answer.outcome(), AnswerOutcome::NoMatch);
}

/// The fast path is exact: over every region's example numbers in every written form
/// (`relay_domain::phone_examples`), for organizations in regions with each kind of trunk
/// prefix, each holding a contact for every number the parser makes of the examples, the
/// answer (match, number, variables) is what parsing first and looking the result up gives.
#[tokio::test]
async fn the_fast_path_answers_every_regions_numbers_as_parsing_first_does() {
    use relay_domain::phone_examples;
    let cases = phone_examples::caller_ids();
    let orgs: Vec<Organization> = phone_examples::READING_REGIONS
        .iter()
        .enumerate()
        .map(|(i, region)| Organization {
            id: OrgId::from_uuid(uuid::Uuid::from_u128(1_000 + i as u128)),
            ..org_in(region)
        })
        .collect();
    let mut directory = MapDirectory::default();
    for org in &orgs {
        for case in &cases {
            // Contacts imported in the organization's region, or in the number's own (a region
            // the organization had before).
            for region in case.region.iter().chain([&org.default_region]) {
                if let Ok(number) = E164::parse(&case.raw, region) {
                    directory.add(org.id, number);
                }
            }
        }
    }
    let directory = Arc::new(directory);
    let mut matched = 0;
    for org in &orgs {
        let mut orgs_dir = MockOrganizationDirectory::new();
        let found = org.clone();
        orgs_dir
            .expect_find_by_secret_digest()
            .returning(move |_| Ok(Some(found.clone())));
        let svc = service_over(
            orgs_dir,
            Arc::clone(&directory) as Arc<dyn ContactDirectory>,
            InMemoryCache::new(),
        );
        for case in &cases {
            let answer = svc
                .personalize(&token(), request(Some(&case.raw)))
                .await
                .unwrap();
            let expected = match E164::parse(&case.raw, &org.default_region) {
                Err(reason) => (MatchResult::NoCallerNumber(reason), None),
                Ok(number) => match directory.find_by_phone(org.id, &number).await.unwrap() {
                    Some(contact) => (MatchResult::Matched(contact.id), Some(number)),
                    None => (MatchResult::UnknownCaller, Some(number)),
                },
            };
            assert_eq!(
                (answer.matched, answer.caller_number.clone()),
                expected,
                "{} in {}",
                case.raw,
                org.default_region
            );
            matched += usize::from(matches!(answer.matched, MatchResult::Matched(_)));
        }
    }
    assert!(matched > 5_000, "only {matched} matches");
}

proptest::proptest! {
    /// Any caller id in E.164 shape, valid or not, is answered as parsing first answers it.
    #[test]
    fn any_e164_shaped_caller_id_is_answered_as_parsing_first_does(
        digits in "[0-9]{1,16}",
        region in proptest::sample::select(&relay_domain::phone_examples::READING_REGIONS[..]),
    ) {
        let raw = format!("+{digits}");
        let org = org_in(region);
        let mut directory = MapDirectory::default();
        if let Ok(number) = E164::parse(&raw, &org.default_region) {
            directory.add(org.id, number);
        }
        let directory = Arc::new(directory);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let answer = runtime.block_on(async {
            let mut orgs_dir = MockOrganizationDirectory::new();
            let found = org.clone();
            orgs_dir.expect_find_by_secret_digest().returning(move |_| Ok(Some(found.clone())));
            let svc = service_over(
                orgs_dir,
                Arc::clone(&directory) as Arc<dyn ContactDirectory>,
                InMemoryCache::new(),
            );
            svc.personalize(&token(), request(Some(&raw))).await.unwrap()
        });
        match E164::parse(&raw, &org.default_region) {
            Err(reason) => proptest::prop_assert_eq!(answer.matched, MatchResult::NoCallerNumber(reason)),
            Ok(number) => {
                proptest::prop_assert!(matches!(answer.matched, MatchResult::Matched(_)));
                proptest::prop_assert_eq!(answer.caller_number, Some(number));
            }
        }
    }
}
