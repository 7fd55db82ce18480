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

/// One public contract, field for field as ESI's public-contracts route returns it.
///
/// Real pages carry every field but `buyout` (auctions) and `for_corporation` (only when
/// true), with `0` or `0.0` where a field does not apply; absent fields read as those zeros,
/// and fields this model does not know are ignored. Ids are 64-bit: character ids already
/// pass 2^31.
#[allow(clippy::struct_field_names, reason = "ESI's field names, kept as they are")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    /// Contract id.
    pub contract_id: i64,
    /// Contract type; ESI's field is named `type`.
    #[serde(rename = "type")]
    pub kind: ContractType,
    /// The issuing character.
    pub issuer_id: i64,
    /// The issuer's corporation.
    pub issuer_corporation_id: i64,
    /// Creation time.
    pub date_issued: Timestamp,
    /// Expiry time.
    pub date_expired: Timestamp,
    /// Price: what the acceptor pays for an item exchange, an auction's starting bid, a loan's
    /// amount; `0.0` on couriers.
    #[serde(default)]
    pub price: f64,
    /// Buyout price (auctions only, and not always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyout: Option<f64>,
    /// ISK the issuer pays the acceptor: a courier's hauling reward, or ISK given with an item
    /// exchange's items; `0.0` otherwise.
    #[serde(default)]
    pub reward: f64,
    /// Collateral (couriers); `0.0` otherwise.
    #[serde(default)]
    pub collateral: f64,
    /// Volume of the items in m3.
    #[serde(default)]
    pub volume: f64,
    /// Days the acceptor has to complete a courier; `0` otherwise.
    #[serde(default)]
    pub days_to_complete: i64,
    /// Station or structure the contract starts at.
    #[serde(default)]
    pub start_location_id: i64,
    /// Destination of a courier; the start location for other types.
    #[serde(default)]
    pub end_location_id: i64,
    /// Issued on behalf of the issuer's corporation (ESI sends it only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub for_corporation: bool,
    /// Free text, often empty.
    #[serde(default)]
    pub title: String,
}

impl Contract {
    /// The ISK amount this contract adds to its type's total in a [`RegionSummary`]: the money
    /// the contract asks of its acceptor, or for a courier the money it offers.
    ///
    /// - item exchange: `price`. A `reward` on an item exchange is ISK the issuer hands over
    ///   with the items (the acceptor receives it); it is not a price and is not added, nor
    ///   subtracted: the total says what the region's item exchanges ask for;
    /// - auction: `price`, the starting bid (the buyout is optional and often absent, so it is
    ///   not a comparable figure);
    /// - courier: `reward`, what the issuer pays (the collateral is a deposit, not a payment);
    /// - loan: `price`;
    /// - unknown: nothing.
    #[must_use]
    pub fn isk_value(&self) -> f64 {
        match self.kind {
            ContractType::ItemExchange | ContractType::Auction | ContractType::Loan => self.price,
            ContractType::Courier => self.reward,
            ContractType::Unknown => 0.0,
        }
    }
}

/// The contracts of one page and how many of its elements were skipped: an element that is
/// not a contract this model can read (a value of an unexpected type, a bad date) is counted,
/// not allowed to fail the page.
///
/// # Errors
/// The body is not a JSON array.
pub fn parse_page(body: &str) -> Result<(Vec<Contract>, usize), serde_json::Error> {
    let elements: Vec<serde_json::Value> = serde_json::from_str(body)?;
    let total = elements.len();
    let contracts: Vec<Contract> = elements.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
    let skipped = total - contracts.len();
    Ok((contracts, skipped))
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
    pub contract_id: i64,
    /// Price in ISK.
    pub price: f64,
    /// Title; empty when the contract has none.
    pub title: String,
    /// Volume in m3.
    pub volume: f64,
    /// Where the items are.
    pub start_location_id: i64,
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
    /// All contracts of the region that could be read.
    pub contracts: usize,
    /// Contracts ESI listed that could not be read (a value this model does not expect):
    /// left out of every figure, counted here so that a summary says it is incomplete.
    #[serde(default)]
    pub skipped: usize,
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
/// summary, whatever the clock says). `skipped` is 0: the caller knows what it could not read.
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
        .filter(|c| c.price > 0.0)
        .map(|c| (c, c.price))
        .collect();
    ranked.sort_by(|(a, pa), (b, pb)| pb.total_cmp(pa).then_with(|| a.contract_id.cmp(&b.contract_id)));
    let top_item_exchanges = ranked
        .into_iter()
        .take(TOP_ITEM_EXCHANGES)
        .map(|(c, price)| TopContract {
            contract_id: c.contract_id,
            price,
            title: c.title.clone(),
            volume: c.volume,
            start_location_id: c.start_location_id,
            date_expired: c.date_expired,
        })
        .collect();

    RegionSummary {
        region_id,
        computed_at: now,
        contracts: contracts.len(),
        skipped: 0,
        by_type,
        top_item_exchanges,
        expiring_within_24h,
    }
}
