//! PartnerStack API simulator (stub).
