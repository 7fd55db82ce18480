//! The ESI public-contract model and the per-region summary computed from it.
//!
//! [`Contract`] mirrors one element of `GET /contracts/public/{region_id}/` exactly as ESI returns
//! it (optional fields are absent, not null, when they do not apply). [`summarize`] is the pure
//! aggregation behind the example's `ContractAggregationService`: counts and ISK totals by
//! contract type, the most expensive item exchanges and the count expiring within 24 hours.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

/// How many item exchanges [`RegionSummary::top_item_exchanges`] keeps.
pub const TOP_ITEM_EXCHANGES: usize = 10;

/// The window, in seconds after [`RegionSummary::computed_at`], counted by
/// [`RegionSummary::expiring_within_24h`].
pub const EXPIRY_WINDOW_SECS: i64 = 24 * 60 * 60;

/// The type of a contract, as ESI spells it (`item_exchange`, `auction`, `courier`, `loan`,
/// `unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractType {
    /// Items (and/or ISK) exchanged for a fixed `price`.
    ItemExchange,
    /// Items sold to the highest bidder; `price` is the starting bid, `buyout` optional.
    Auction,
    /// Items hauled to `end_location_id` for a `reward`, secured by a `collateral`.
    Courier,
    /// ISK lent against items.
    Loan,
    /// ESI's own `unknown`; any type string this model does not know also lands here rather than
    /// failing the whole page.
    #[serde(other)]
    Unknown,
}

impl ContractType {
    /// Every type, in the order summaries list them.
    pub const ALL: [Self; 5] = [Self::ItemExchange, Self::Auction, Self::Courier, Self::Loan, Self::Unknown];

    /// The ESI spelling (`item_exchange`, ...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ItemExchange => "item_exchange",
            Self::Auction => "auction",
            Self::Courier => "courier",
            Self::Loan => "loan",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ContractType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One public contract, field for field as ESI's `GetContractsPublicRegionId200Ok`.
#[allow(clippy::struct_field_names, reason = "ESI's field names, kept as they are")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    /// Contract id (int32).
    pub contract_id: i32,
    /// Contract type; ESI's field is named `type`.
    #[serde(rename = "type")]
    pub kind: ContractType,
    /// The issuing character.
    pub issuer_id: i32,
    /// The issuer's corporation.
    pub issuer_corporation_id: i32,
    /// Creation time.
    pub date_issued: Timestamp,
    /// Expiry time.
    pub date_expired: Timestamp,
    /// Price (item exchanges, auctions' starting bid, loans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Buyout price (auctions only, and not always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyout: Option<f64>,
    /// Reward for hauling (couriers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
    /// Collateral (couriers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<f64>,
    /// Volume of the items in m3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<f64>,
    /// Days the acceptor has to complete a courier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_to_complete: Option<i32>,
    /// Station or structure the contract starts at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_location_id: Option<i64>,
    /// Destination of a courier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_location_id: Option<i64>,
    /// Issued on behalf of the issuer's corporation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_corporation: Option<bool>,
    /// Free text, often empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl Contract {
    /// The ISK amount this contract adds to its type's total in a [`RegionSummary`]:
    ///
    /// - item exchange: `price`;
    /// - auction: `price`, the starting bid (the buyout is optional and often absent, so it is
    ///   not a comparable figure);
    /// - courier: `reward`, what the issuer pays (the collateral is a deposit, not a payment);
    /// - loan: `price`;
    /// - unknown: nothing.
    ///
    /// An absent field counts as zero.
    #[must_use]
    pub fn isk_value(&self) -> f64 {
        let value = match self.kind {
            ContractType::ItemExchange | ContractType::Auction | ContractType::Loan => self.price,
            ContractType::Courier => self.reward,
            ContractType::Unknown => None,
        };
        value.unwrap_or(0.0)
    }
}

/// Count and ISK total of one contract type (see [`Contract::isk_value`] for the ISK figure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TypeTotals {
    /// Contracts of this type.
    pub count: usize,
    /// Sum of their [`Contract::isk_value`], in ISK.
    pub isk_total: f64,
}

/// [`TypeTotals`] for every contract type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TypeBreakdown {
    /// Item exchanges (ISK: price).
    pub item_exchange: TypeTotals,
    /// Auctions (ISK: starting price).
    pub auction: TypeTotals,
    /// Couriers (ISK: reward).
    pub courier: TypeTotals,
    /// Loans (ISK: price).
    pub loan: TypeTotals,
    /// Unknown types (ISK: always 0).
    pub unknown: TypeTotals,
}

impl TypeBreakdown {
    /// The totals of one type.
    #[must_use]
    pub const fn get(&self, kind: ContractType) -> &TypeTotals {
        match kind {
            ContractType::ItemExchange => &self.item_exchange,
            ContractType::Auction => &self.auction,
            ContractType::Courier => &self.courier,
            ContractType::Loan => &self.loan,
            ContractType::Unknown => &self.unknown,
        }
    }

    /// The totals of one type, mutably.
    const fn get_mut(&mut self, kind: ContractType) -> &mut TypeTotals {
        match kind {
            ContractType::ItemExchange => &mut self.item_exchange,
            ContractType::Auction => &mut self.auction,
            ContractType::Courier => &mut self.courier,
            ContractType::Loan => &mut self.loan,
            ContractType::Unknown => &mut self.unknown,
        }
    }
}

/// One of the most expensive item exchanges of a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopContract {
    /// Contract id.
    pub contract_id: i32,
    /// Price in ISK.
    pub price: f64,
    /// Title; empty when the contract has none.
    pub title: String,
    /// Volume in m3, when ESI gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<f64>,
    /// Where the items are, when ESI gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_location_id: Option<i64>,
    /// When the contract expires.
    pub date_expired: Timestamp,
}

/// The aggregate of one region's public contracts at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionSummary {
    /// The region.
    pub region_id: i32,
    /// The moment the summary describes ("now" for the expiry count).
    pub computed_at: Timestamp,
    /// All contracts of the region.
    pub contracts: usize,
    /// Counts and ISK totals by type.
    pub by_type: TypeBreakdown,
    /// The [`TOP_ITEM_EXCHANGES`] most expensive item exchanges (with a price), by price
    /// descending, then contract id ascending.
    pub top_item_exchanges: Vec<TopContract>,
    /// Contracts with `computed_at < date_expired <= computed_at + 24h` (contracts already
    /// expired at `computed_at` are not counted).
    pub expiring_within_24h: usize,
}

/// Summarizes the contracts of `region_id` as of `now` (pure: the same input gives the same
/// summary, whatever the clock says).
#[must_use]
pub fn summarize(region_id: i32, contracts: &[Contract], now: Timestamp) -> RegionSummary {
    let mut by_type = TypeBreakdown::default();
    let mut expiring_within_24h = 0;
    let horizon = now.0.saturating_add(EXPIRY_WINDOW_SECS);
    for contract in contracts {
        let totals = by_type.get_mut(contract.kind);
        totals.count += 1;
        totals.isk_total += contract.isk_value();
        if now.0 < contract.date_expired.0 && contract.date_expired.0 <= horizon {
            expiring_within_24h += 1;
        }
    }

    let mut ranked: Vec<(&Contract, f64)> = contracts
        .iter()
        .filter(|c| c.kind == ContractType::ItemExchange)
        .filter_map(|c| c.price.map(|price| (c, price)))
        .collect();
    ranked.sort_by(|(a, pa), (b, pb)| pb.total_cmp(pa).then_with(|| a.contract_id.cmp(&b.contract_id)));
    let top_item_exchanges = ranked
        .into_iter()
        .take(TOP_ITEM_EXCHANGES)
        .map(|(c, price)| TopContract {
            contract_id: c.contract_id,
            price,
            title: c.title.clone().unwrap_or_default(),
            volume: c.volume,
            start_location_id: c.start_location_id,
            date_expired: c.date_expired,
        })
        .collect();

    RegionSummary {
        region_id,
        computed_at: now,
        contracts: contracts.len(),
        by_type,
        top_item_exchanges,
        expiring_within_24h,
    }
}
