//! PartnerStack vendor API client (stub).
