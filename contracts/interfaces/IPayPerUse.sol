// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {
    AgreementView,
    DeviceKey,
    DirectDebit,
    KeyType,
    Machine,
    OpenParams,
    Permit,
    Reading,
    SignedReading,
    SkipReason,
    TariffParams,
    Tier,
    TrustMode
} from "../types/DataTypes.sol";

/// @title IPayPerUse
/// @notice Pay-per-use billing for machines: a registry of machines and their device keys, immutable tariff
/// versions, escrowed agreements funded in any ERC-20, metering of signed cumulative readings, and
/// settlement with a SEPA direct-debit fallback for debt.
/// @dev All amounts are in the agreement token's smallest units; all times in Unix seconds; units are the
/// machine's metered units (see the tariff's `unit` and `unitScale`).
interface IPayPerUse {
    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Emitted when an owner registers a machine.
    event MachineRegistered(
        bytes32 indexed machineId,
        address indexed owner,
        address payout,
        TrustMode trustMode,
        KeyType keyType,
        bytes32 keyX,
        bytes32 keyY,
        uint64 maxUnitsPerHour
    );

    /// @notice Emitted when a machine's device key is replaced; readings signed by older keys are refused.
    event DeviceKeyRotated(bytes32 indexed machineId, uint32 keyVersion, KeyType keyType, bytes32 keyX, bytes32 keyY);

    /// @notice Emitted when a machine's device key is revoked; its readings are refused from now on.
    event DeviceKeyRevoked(bytes32 indexed machineId, uint32 keyVersion);

    /// @notice Emitted when the address receiving a machine's earnings changes.
    event PayoutChanged(bytes32 indexed machineId, address payout);

    /// @notice Emitted when a machine changes owner.
    event MachineTransferred(bytes32 indexed machineId, address indexed from, address indexed to);

    /// @notice Emitted when the admin replaces the oracle signer set.
    event OracleSignersChanged(address[] signers, uint8 threshold);

    /// @notice Emitted when an owner publishes a tariff version (versions count from 1).
    event TariffPublished(
        bytes32 indexed machineId,
        uint32 indexed version,
        address token,
        string unit,
        uint256 price,
        uint256 unitScale,
        uint256 minimumCharge,
        uint256 baseFee,
        uint64 period,
        Tier[] tiers
    );

    /// @notice Emitted when a lessee opens an agreement; `deposit` is what reached the escrow.
    event AgreementOpened(
        uint256 indexed agreementId,
        bytes32 indexed machineId,
        address indexed lessee,
        uint32 tariffVersion,
        address token,
        uint256 deposit,
        uint64 endTime,
        uint64 disputeWindow
    );

    /// @notice Emitted on a top-up. `debtRepaid` is the part that covered debt; `escrow` is the escrow after.
    event EscrowToppedUp(
        uint256 indexed agreementId, address indexed from, uint256 amount, uint256 escrow, uint256 debtRepaid
    );

    /// @notice Emitted when the lessee attaches or replaces the mandate reference (a hash, never the mandate).
    event MandateSet(uint256 indexed agreementId, bytes32 mandateRef);

    /// @notice Emitted when the lessee or the machine owner ends an agreement early.
    event AgreementEnded(uint256 indexed agreementId, uint64 endTime);

    /// @notice Emitted when an agreement closes after its dispute window; `refund` went back to the lessee.
    event AgreementClosed(uint256 indexed agreementId, uint256 refund, uint256 totalCharged);

    /// @notice Emitted for every charged reading.
    /// @param cumulativeUnits The meter now recorded.
    /// @param units Units added by this reading.
    /// @param charge What this reading charged (tariff delta plus any base fees, after the spending cap).
    /// @param escrow Escrow left after the charge.
    /// @param debt Debt after the charge.
    /// @param timestamp The reading's own timestamp.
    event UsageRecorded(
        uint256 indexed agreementId,
        bytes32 indexed machineId,
        uint256 cumulativeUnits,
        uint256 units,
        uint256 charge,
        uint256 escrow,
        uint256 debt,
        uint64 timestamp
    );

    /// @notice Emitted for every reading that was not charged, with the reason. Never reverts the batch.
    event ReadingSkipped(
        uint256 indexed agreementId, bytes32 indexed machineId, SkipReason reason, uint256 cumulativeUnits
    );

    /// @notice Emitted when a charge takes the escrow below the agreement's low-balance threshold.
    event LowBalance(uint256 indexed agreementId, uint256 escrow, uint256 threshold);

    /// @notice Emitted when the spending cap of the current period is reached; `forgiven` was not charged.
    event SpendingCapReached(uint256 indexed agreementId, uint64 periodStart, uint256 cap, uint256 forgiven);

    /// @notice Emitted when a returned direct debit suspends an agreement.
    event AgreementSuspended(uint256 indexed agreementId, uint256 indexed debitId, bytes4 reasonCode);

    /// @notice Emitted when a suspended agreement's debt is paid and metering resumes.
    event AgreementReinstated(uint256 indexed agreementId);

    /// @notice Emitted when earnings are transferred to a payee.
    event EarningsPaid(address indexed payee, address indexed token, uint256 amount);

    /// @notice Emitted when a batch payout to a payee fails (e.g. a blocklisted address); the earnings stay.
    event PayoutFailed(address indexed payee, address indexed token, uint256 amount);

    /// @notice Emitted when settlement asks the lessee's bank to collect an agreement's debt by SEPA direct debit.
    event DirectDebitRequested(
        uint256 indexed debitId,
        uint256 indexed agreementId,
        bytes32 indexed mandateRef,
        address token,
        uint256 amount,
        uint64 dueDate
    );

    /// @notice Emitted when the bank confirms a collection and delivers the tokens.
    event DirectDebitCollected(uint256 indexed debitId, uint256 indexed agreementId, uint256 amount);

    /// @notice Emitted when the bank reports a return (before settlement) or a refund (after collection).
    event DirectDebitReturned(
        uint256 indexed debitId, uint256 indexed agreementId, uint256 amount, bytes4 reasonCode, bool afterCollection
    );

    /// @notice Emitted when debt is paid directly; `debt` is what remains.
    event DebtRepaid(uint256 indexed agreementId, address indexed from, uint256 amount, uint256 debt);

    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    /// @notice A required address was zero.
    error PayPerUse_ZeroAddress();
    /// @notice The machine id is already registered.
    error PayPerUse_MachineExists(bytes32 machineId);
    /// @notice No machine has this id.
    error PayPerUse_UnknownMachine(bytes32 machineId);
    /// @notice Only the machine's owner may do this.
    error PayPerUse_NotMachineOwner(bytes32 machineId, address caller);
    /// @notice The device key is malformed, not on its curve, or missing for a device-signed machine.
    error PayPerUse_InvalidDeviceKey(bytes32 machineId, KeyType keyType);
    /// @notice The threshold must be between 1 and the number of signers.
    error PayPerUse_InvalidThreshold(uint256 threshold, uint256 signers);
    /// @notice An oracle signer is zero or listed twice.
    error PayPerUse_InvalidOracleSigner(address signer);
    /// @notice A tariff's unit scale must be above zero.
    error PayPerUse_ZeroUnitScale();
    /// @notice Tier `index` does not start above the previous one (or at zero).
    error PayPerUse_TiersNotAscending(uint256 index, uint256 fromUnits);
    /// @notice A base fee needs a period.
    error PayPerUse_BaseFeeWithoutPeriod(uint256 baseFee);
    /// @notice A tariff or agreement value does not fit its storage (prices 96 bits, unit scale 64 bits).
    error PayPerUse_ValueTooLarge(uint256 value);
    /// @notice The machine has no such tariff version.
    error PayPerUse_UnknownTariff(bytes32 machineId, uint32 version);
    /// @notice The end time must lie in the future.
    error PayPerUse_EndTimeInPast(uint64 endTime, uint256 currentTime);
    /// @notice A spending cap needs a cap period.
    error PayPerUse_CapWithoutPeriod(uint256 spendingCap);
    /// @notice The token delivered less than was sent (fee-on-transfer tokens are not supported).
    error PayPerUse_FeeOnTransferToken(address token, uint256 expected, uint256 received);
    /// @notice No agreement has this id.
    error PayPerUse_UnknownAgreement(uint256 agreementId);
    /// @notice Only the agreement's lessee may do this.
    error PayPerUse_NotLessee(uint256 agreementId, address caller);
    /// @notice Only the lessee or the machine owner may do this.
    error PayPerUse_NotLesseeOrOwner(uint256 agreementId, address caller);
    /// @notice The agreement is closed.
    error PayPerUse_AgreementIsClosed(uint256 agreementId);
    /// @notice The agreement may close only after its dispute window, at `closesAt`.
    error PayPerUse_DisputeWindowOpen(uint256 agreementId, uint256 closesAt);
    /// @notice The amount must be above zero.
    error PayPerUse_ZeroAmount();
    /// @notice The amount exceeds the agreement's debt.
    error PayPerUse_AmountAboveDebt(uint256 agreementId, uint256 amount, uint256 debt);
    /// @notice The batch holds no readings.
    error PayPerUse_EmptyBatch();
    /// @notice Fewer valid oracle signatures than the threshold.
    error PayPerUse_InsufficientAttestations(uint256 valid, uint256 threshold);
    /// @notice Signature `index` is not by a registered oracle signer, or not in ascending signer order.
    error PayPerUse_InvalidAttestation(uint256 index, address signer);
    /// @notice The payee has nothing to withdraw in this token.
    error PayPerUse_NothingToWithdraw(address payee, address token);
    /// @notice No direct debit has this id.
    error PayPerUse_UnknownDebit(uint256 debitId);
    /// @notice The direct debit is not in a state that allows this.
    error PayPerUse_DebitNotOpen(uint256 debitId);
    /// @notice Return reason codes are four ASCII letters or digits, as in ISO 20022 (e.g. "AC04").
    error PayPerUse_InvalidReasonCode(bytes4 reasonCode);

    /*//////////////////////////////////////////////////////////////
                            MACHINE REGISTRY
    //////////////////////////////////////////////////////////////*/

    /// @notice Registers a machine owned by the caller.
    /// @dev Emits a {MachineRegistered} event.
    /// Notes:
    /// - `maxUnitsPerHour` is the machine's declared top metering rate; the oracle refuses faster meters.
    /// - An oracle-attested machine may have no key (`KeyType.None`).
    /// Requirements:
    /// - `machineId` must be new; `payout` must not be zero.
    /// - A device-signed machine needs a valid key: secp256k1 as an address in `x` (y zero), P-256 on the curve.
    function registerMachine(
        bytes32 machineId,
        address payout,
        TrustMode trustMode,
        uint64 maxUnitsPerHour,
        DeviceKey calldata key
    ) external;

    /// @notice Replaces the machine's device key; only readings signed by the new key are accepted.
    /// @dev Emits a {DeviceKeyRotated} event. Requirements: caller is the owner; the key is valid.
    function rotateDeviceKey(bytes32 machineId, DeviceKey calldata key) external;

    /// @notice Revokes the machine's device key; its readings are skipped (`NoDeviceKey`) until a rotation.
    /// @dev Emits a {DeviceKeyRevoked} event. Requirements: caller is the owner.
    function revokeDeviceKey(bytes32 machineId) external;

    /// @notice Sets where the machine's earnings are paid.
    /// @dev Emits a {PayoutChanged} event. Requirements: caller is the owner; `payout` not zero.
    function setPayout(bytes32 machineId, address payout) external;

    /// @notice Transfers the machine to a new owner. The payout address is unchanged.
    /// @dev Emits a {MachineTransferred} event. Requirements: caller is the owner; `newOwner` not zero.
    function transferMachine(bytes32 machineId, address newOwner) external;

    /// @notice Replaces the oracle signer set and its threshold k of n.
    /// @dev Emits an {OracleSignersChanged} event.
    /// Requirements: caller has DEFAULT_ADMIN_ROLE; signers non-zero and distinct; 1 <= threshold <= n.
    function setOracleSigners(address[] calldata signers, uint8 threshold) external;

    /// @notice Returns a machine; `owner` is zero for an unknown id.
    function getMachine(bytes32 machineId) external view returns (Machine memory);

    /// @notice Returns the oracle signer set and its threshold.
    function getOracleSigners() external view returns (address[] memory signers, uint8 threshold);

    /*//////////////////////////////////////////////////////////////
                                TARIFFS
    //////////////////////////////////////////////////////////////*/

    /// @notice Publishes a new, immutable tariff version for a machine and returns its number.
    /// @dev Emits a {TariffPublished} event.
    /// Notes: running agreements keep the version they were opened with.
    /// Requirements: caller is the owner; token not zero; unitScale > 0 and < 2^64; prices < 2^96;
    /// tiers strictly ascending and above zero; a base fee needs a period.
    function publishTariff(bytes32 machineId, TariffParams calldata params) external returns (uint32 version);

    /// @notice Returns a tariff version.
    function getTariff(bytes32 machineId, uint32 version) external view returns (TariffParams memory);

    /// @notice What `cumulativeUnits` cost under a tariff version, without base fees or minimum charge.
    function costOf(bytes32 machineId, uint32 version, uint256 cumulativeUnits) external view returns (uint256);

    /*//////////////////////////////////////////////////////////////
                               AGREEMENTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Opens an agreement for a machine under a tariff version, pulling `deposit` from the caller.
    /// @dev Emits an {AgreementOpened} event.
    /// Notes: the caller must have approved the contract for `deposit` of the tariff's token.
    /// Requirements: the tariff exists; endTime in the future; a spending cap needs a cap period; the token
    /// delivers exactly what is sent.
    function openAgreement(OpenParams calldata params) external returns (uint256 agreementId);

    /// @notice Same as {openAgreement}, approving with an EIP-2612 permit in the same call.
    /// @dev A permit that was already used (e.g. front-run) is ignored if the allowance suffices.
    function openAgreementWithPermit(OpenParams calldata params, Permit calldata permit)
        external
        returns (uint256 agreementId);

    /// @notice Adds `amount` to an agreement's escrow; any debt is covered first.
    /// @dev Emits {EscrowToppedUp}, and {AgreementReinstated} when a suspended agreement's debt is cleared.
    /// Requirements: the agreement exists and is not closed; amount > 0.
    function topUp(uint256 agreementId, uint256 amount) external;

    /// @notice Same as {topUp}, approving with an EIP-2612 permit in the same call.
    function topUpWithPermit(uint256 agreementId, uint256 amount, Permit calldata permit) external;

    /// @notice Attaches the reference (hash) of the lessee's SEPA mandate, for direct debits of debt.
    /// @dev Emits a {MandateSet} event. Requirements: caller is the lessee; agreement not closed.
    function setMandate(uint256 agreementId, bytes32 mandateRef) external;

    /// @notice Ends an agreement now (if its end time is later); the dispute window starts.
    /// @dev Emits an {AgreementEnded} event. Requirements: caller is the lessee or the machine owner.
    function endAgreement(uint256 agreementId) external;

    /// @notice Closes an agreement after its dispute window: charges what remains of base fees and the
    /// minimum charge, and refunds the rest of the escrow to the lessee.
    /// @dev Emits an {AgreementClosed} event, and {PayoutFailed} when the token refuses to pay the lessee (the
    /// refund then stays withdrawable by the lessee). Anyone may call it.
    /// Requirements: the agreement is not closed; block time is past endTime + disputeWindow.
    function closeAgreement(uint256 agreementId) external;

    /// @notice Returns an agreement.
    function getAgreement(uint256 agreementId) external view returns (AgreementView memory);

    /// @notice Number of agreements opened; ids run from 1 to this.
    function agreementCount() external view returns (uint256);

    /*//////////////////////////////////////////////////////////////
                                METERING
    //////////////////////////////////////////////////////////////*/

    /// @notice Records device-signed cumulative readings for any number of agreements. Anyone may relay them.
    /// @dev Emits {UsageRecorded} or {ReadingSkipped} per reading, and {LowBalance} / {SpendingCapReached}
    /// where they apply.
    /// Notes:
    /// - Only a reading above the recorded meter charges; the charge is cost(new) - cost(recorded).
    /// - Invalid readings are skipped with a reason and never revert the batch.
    /// - No token moves: escrow becomes the owner's earnings inside the contract.
    /// Requirements: at least one reading.
    function record(SignedReading[] calldata readings) external;

    /// @notice Records readings of oracle-attested machines, signed as a batch by k oracle signers.
    /// @dev Emits as {record}.
    /// Requirements: `signatures` are 65-byte secp256k1 signatures over {batchDigest} by at least `threshold`
    /// registered oracle signers in strictly ascending address order.
    function recordAttested(Reading[] calldata readings, bytes[] calldata signatures) external;

    /// @notice The EIP-712 digest of one reading (what a secp256k1 device key signs; P-256 keys sign its
    /// SHA-256 with ECDSA, i.e. the contract checks P256 over sha256(digest)).
    function readingDigest(Reading calldata reading) external view returns (bytes32);

    /// @notice The EIP-712 digest of a ReadingBatch (what oracle signers sign).
    function batchDigest(Reading[] calldata readings) external view returns (bytes32);

    /*//////////////////////////////////////////////////////////////
                               SETTLEMENT
    //////////////////////////////////////////////////////////////*/

    /// @notice Earnings credited to `payee` in `token` and not yet paid.
    function earnings(address payee, address token) external view returns (uint256);

    /// @notice Earnings accrued by an agreement and not yet credited to its payee by {settle}.
    function unsettledEarnings(uint256 agreementId) external view returns (uint256);

    /// @notice Pays the caller's credited earnings in `token`.
    /// @dev Emits an {EarningsPaid} event. Requirements: something to withdraw.
    function withdraw(address token) external;

    /// @notice Settles agreements in a batch: credits each one's accrued earnings to its machine's payout and
    /// pays it out, and requests a direct debit for debt that has a mandate and no open debit.
    /// @dev Emits {EarningsPaid} or {PayoutFailed} per payee and {DirectDebitRequested} per new debit.
    /// Notes: a payee whose transfer fails (e.g. blocklisted) keeps the balance and blocks nobody else.
    function settle(uint256[] calldata agreementIds) external;

    /// @notice Returns a direct debit.
    function getDirectDebit(uint256 debitId) external view returns (DirectDebit memory);

    /// @notice The bank confirms a collected direct debit and delivers its amount in tokens.
    /// @dev Emits {DirectDebitCollected}, and {AgreementReinstated} when a suspended agreement is cleared.
    /// Requirements: caller has BANK_ROLE and approved the tokens; the debit is Requested.
    function confirmDirectDebit(uint256 debitId) external;

    /// @notice The bank reports a returned debit (Requested) or a refund of a collected one (Collected), with
    /// its ISO 20022 reason code. Suspends the agreement.
    /// @dev Emits {DirectDebitReturned} and {AgreementSuspended}.
    /// Notes: after a refund the debt is re-opened and the bank is credited what the agreement still holds
    /// of the collected amount.
    /// Requirements: caller has BANK_ROLE; the debit is Requested or Collected; the code is 4 ASCII alphanumerics.
    function reportDirectDebitReturn(uint256 debitId, bytes4 reasonCode) external;

    /// @notice Pays an agreement's debt directly.
    /// @dev Emits {DebtRepaid}, and {AgreementReinstated} when a suspended agreement is cleared.
    /// Requirements: 0 < amount <= debt.
    function payDebt(uint256 agreementId, uint256 amount) external;
}
