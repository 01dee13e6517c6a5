// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @notice How a machine's readings are trusted.
/// @dev DeviceSigned: every reading carries the machine's own signature; OracleAttested: a threshold of
/// registered oracle signers signs the batch.
enum TrustMode {
    DeviceSigned,
    OracleAttested
}

/// @notice The curve of a device key. `None` means no valid key (never registered, or revoked).
enum KeyType {
    None,
    Secp256k1,
    P256
}

/// @notice Life cycle of an agreement.
enum AgreementStatus {
    None,
    Active,
    Suspended,
    Closed
}

/// @notice Why `record` or `recordAttested` skipped a reading. Skips never revert the batch.
enum SkipReason {
    UnknownAgreement,
    MachineMismatch,
    WrongTrustMode,
    AgreementNotActive,
    NoDeviceKey,
    BadSignature,
    StaleReading,
    BeforeStart,
    AfterEnd,
    TooLate,
    FutureTimestamp
}

/// @notice Life cycle of a SEPA direct debit requested for an agreement's debt.
enum DebitStatus {
    None,
    Requested,
    Collected,
    Returned
}

/// @notice A device public key. For secp256k1 `x` holds the key's address in its low 20 bytes and `y` is
/// zero; for P-256 `x` and `y` are the affine coordinates.
struct DeviceKey {
    KeyType keyType;
    bytes32 x;
    bytes32 y;
}

/// @notice A registered machine, as returned by `getMachine`.
struct Machine {
    address owner;
    address payout;
    TrustMode trustMode;
    KeyType keyType;
    uint32 keyVersion;
    /// @dev Declared maximum metering rate in units per hour; 0 = not declared. Checked off-chain by the oracle.
    uint64 maxUnitsPerHour;
    bytes32 keyX;
    bytes32 keyY;
    uint32 tariffCount;
}

/// @notice A volume tier: from `fromUnits` cumulative units on, `price` applies (token smallest units per
/// `unitScale` units).
struct Tier {
    uint256 fromUnits;
    uint256 price;
}

/// @notice A tariff version. Immutable once published.
/// @dev cost(u) = floor(sum over price bands of unitsInBand * bandPrice / unitScale); the charge for a
/// reading is cost(new) - cost(previous), so rounding never drifts.
struct TariffParams {
    /// @dev The ERC-20 the agreement is paid in.
    address token;
    /// @dev Unit name, e.g. "kWh", "cycles", "hours".
    string unit;
    /// @dev Token smallest units per `unitScale` metered units, below the first tier.
    uint256 price;
    /// @dev Metered units the price refers to (e.g. 1000 when metering Wh and pricing per kWh).
    uint256 unitScale;
    /// @dev Strictly ascending `fromUnits`, all above zero.
    Tier[] tiers;
    /// @dev The least an agreement pays over its life, charged when it closes.
    uint256 minimumCharge;
    /// @dev Charged once for every started `period` since the agreement started.
    uint256 baseFee;
    /// @dev Base-fee period in seconds; 0 means no base fee.
    uint64 period;
}

/// @notice What a lessee chooses when opening an agreement.
struct OpenParams {
    bytes32 machineId;
    uint32 tariffVersion;
    /// @dev Token smallest units pulled from the lessee into escrow.
    uint256 deposit;
    /// @dev Unix seconds after which usage is no longer charged.
    uint64 endTime;
    /// @dev Most the lessee pays per cap period, in token smallest units; 0 = no cap.
    uint256 spendingCap;
    /// @dev Cap period in seconds, aligned to the agreement's start.
    uint64 capPeriod;
    /// @dev `LowBalance` fires when the escrow falls below this, in token smallest units.
    uint256 lowBalanceThreshold;
    /// @dev Seconds after `endTime` during which the last readings may still arrive.
    uint64 disputeWindow;
    /// @dev Hash reference of the SEPA mandate kept off-chain by the bank bridge; 0 = none.
    bytes32 mandateRef;
}

/// @notice An EIP-2612 permit for the agreement's token.
struct Permit {
    uint256 value;
    uint256 deadline;
    uint8 v;
    bytes32 r;
    bytes32 s;
}

/// @notice An agreement, as returned by `getAgreement`. Amounts in token smallest units.
struct AgreementView {
    bytes32 machineId;
    address lessee;
    address token;
    uint32 tariffVersion;
    AgreementStatus status;
    uint64 startTime;
    uint64 endTime;
    uint64 disputeWindow;
    uint256 escrow;
    uint256 debt;
    uint256 cumulativeUnits;
    uint64 lastReadingAt;
    uint256 totalCharged;
    uint256 spendingCap;
    uint64 capPeriod;
    uint256 lowBalanceThreshold;
    bytes32 mandateRef;
}

/// @notice A cumulative meter reading: the machine's meter for the agreement since it started.
struct Reading {
    uint256 agreementId;
    bytes32 machineId;
    uint256 cumulativeUnits;
    /// @dev Unix seconds, the machine's clock when it read the meter.
    uint64 timestamp;
}

/// @notice A reading with the device's signature: 65-byte r‖s‖v (secp256k1) or 64-byte r‖s (P-256).
struct SignedReading {
    Reading reading;
    bytes signature;
}

/// @notice A SEPA direct debit requested for an agreement's debt.
struct DirectDebit {
    uint256 agreementId;
    address token;
    uint256 amount;
    bytes32 mandateRef;
    uint64 dueDate;
    DebitStatus status;
    /// @dev ISO 20022 return reason code as ASCII, e.g. "AC04"; zero unless returned.
    bytes4 returnReason;
}
