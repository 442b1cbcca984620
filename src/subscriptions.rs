//! Which PartnerStack webhooks the mirror subscribes to, for `partnerstack-mirror webhooks
//! register`. The subscription endpoints themselves are the API client's
//! ([`ApiClient::subscribe`](crate::partnerstack::ApiClient::subscribe) and its neighbours).

/// The events `webhooks register` subscribes to when none is named: those the mirror acts on
/// (object changes that trigger a read, and training completions), in PartnerStack's current
/// dotted names. Only the partnership names are documented with confidence (research notes
/// §6.1); the others follow them by analogy.
pub const MIRRORED_EVENTS: [&str; 15] = [
    "partnership.created",
    "partnership.updated",
    "partnership.tags_updated",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "deal.created",
    "deal.updated",
    "lead.created",
    "lead.updated",
    "application.created",
    "application.approved",
    "application.declined",
    "training.course_completed",
    "training.learning_path_completed",
];
