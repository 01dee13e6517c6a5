// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {P256} from "@openzeppelin/contracts/utils/cryptography/P256.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IPayPerUse} from "./interfaces/IPayPerUse.sol";
import {TariffMath} from "./libraries/TariffMath.sol";
import {
    AgreementStatus,
    AgreementView,
    DebitStatus,
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
} from "./types/DataTypes.sol";

/// @title PayPerUse
/// @notice Machines bill their own use: registry, tariffs, escrowed agreements, metering and settlement.
/// @dev Accounting per agreement rests on three totals: `funded` (all money that came in: deposits, top-ups,
/// debt repayments), `charged` (all usage charged) and `paidOut` (earnings moved to the payee). From them:
/// escrow = max(funded - charged, 0), debt = max(charged - funded, 0), unsettled earnings =
/// min(charged, funded) - paidOut, and the tokens the contract holds for the agreement = funded - paidOut =
/// escrow + unsettled earnings. A top-up therefore covers debt first without any extra bookkeeping.
contract PayPerUse is IPayPerUse, AccessControl, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Role of the bank that confirms and returns direct debits.
    bytes32 public constant BANK_ROLE = keccak256("BANK_ROLE");

    /// @notice How far a reading's timestamp may lie ahead of the block time (clock skew of devices).
    uint256 public constant FUTURE_TOLERANCE = 5 minutes;

    /// @dev EIP-712 type of a single reading.
    bytes32 public constant READING_TYPEHASH =
        keccak256("Reading(uint256 agreementId,bytes32 machineId,uint256 cumulativeUnits,uint64 timestamp)");

    /// @dev EIP-712 type of an oracle-attested batch.
    bytes32 public constant READING_BATCH_TYPEHASH = keccak256(
        "ReadingBatch(Reading[] readings)Reading(uint256 agreementId,bytes32 machineId,uint256 cumulativeUnits,uint64 timestamp)"
    );

    uint8 private constant FLAG_TIERED = 1;
    uint8 private constant FLAG_BASE_FEE = 2;
    uint8 private constant FLAG_CAP = 4;

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    struct MachineData {
        // slot 0 — all a device-signed secp256k1 reading needs
        address keyAddress;
        KeyType keyType;
        TrustMode trustMode;
        uint32 keyVersion;
        uint32 tariffCount;
        // slot 1
        address owner;
        uint64 maxUnitsPerHour;
        // slot 2
        address payout;
        // slot 3, 4 — P-256 coordinates (zero for secp256k1, whose key is `keyAddress`)
        bytes32 keyX;
        bytes32 keyY;
    }

    struct AgreementData {
        // slot 0 — written by every charged reading
        uint96 cumulativeUnits;
        uint96 charged;
        uint64 lastReadingAt;
        // slot 1 — read by every reading
        bytes32 machineId;
        // slot 2 — read by every reading
        uint96 funded;
        uint96 lowBalanceThreshold;
        uint40 startTime;
        AgreementStatus status;
        TrustMode trustMode;
        uint8 flags;
        // slot 3 — pinned terms and time window, read by every reading
        uint96 price;
        uint64 unitScale;
        uint40 endTime;
        uint40 closesAt;
        // slot 4
        address lessee;
        uint64 disputeWindow;
        uint32 tariffVersion;
        // slot 5
        address token;
        uint64 capPeriod;
        uint32 baseFeePeriodsCharged;
        // slot 6 — spending cap, only touched when the agreement has one
        uint96 spendingCap;
        uint96 spentInPeriod;
        uint64 capPeriodIndex;
        // slot 7
        uint96 paidOut;
        uint128 openDebitId;
        // slot 8
        bytes32 mandateRef;
        // slot 9 — set when a refunded collection had already been paid out: the bank that is owed the part
        // of later funding that refills `funded` up to `paidOut`.
        address refundCreditor;
    }

    mapping(bytes32 machineId => MachineData) private _machines;
    mapping(bytes32 machineId => mapping(uint32 version => TariffParams)) private _tariffs;
    mapping(uint256 agreementId => AgreementData) private _agreements;
    mapping(address payee => mapping(address token => uint256)) private _earnings;
    mapping(uint256 debitId => DirectDebit) private _debits;
    mapping(address signer => bool) private _isOracleSigner;

    address[] private _oracleSigners;
    uint8 private _oracleThreshold;
    uint256 private _agreementCount;
    uint256 private _debitCount;

    /// @notice Seconds between a direct-debit request and its earliest due date.
    uint64 public immutable DEBIT_LEAD_TIME;

    /*//////////////////////////////////////////////////////////////
                              CONSTRUCTOR
    //////////////////////////////////////////////////////////////*/

    /// @param admin Receives DEFAULT_ADMIN_ROLE (oracle signer set, roles).
    /// @param bank Receives BANK_ROLE (direct-debit confirmations and returns); zero for none yet.
    /// @param oracleSigners Initial oracle signer set; may be empty when `threshold` is 0.
    /// @param threshold Signatures needed on an oracle-attested batch.
    /// @param debitLeadTime Seconds between a direct-debit request and its earliest due date.
    constructor(address admin, address bank, address[] memory oracleSigners, uint8 threshold, uint64 debitLeadTime)
        EIP712("PayPerUse", "1")
    {
        if (admin == address(0)) revert PayPerUse_ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        if (bank != address(0)) _grantRole(BANK_ROLE, bank);
        if (oracleSigners.length > 0 || threshold > 0) _setOracleSigners(oracleSigners, threshold);
        DEBIT_LEAD_TIME = debitLeadTime;
    }

    /*//////////////////////////////////////////////////////////////
                            MACHINE REGISTRY
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IPayPerUse
    function registerMachine(
        bytes32 machineId,
        address payout,
        TrustMode trustMode,
        uint64 maxUnitsPerHour,
        DeviceKey calldata key
    ) external override {
        // Check
        if (_machines[machineId].owner != address(0)) revert PayPerUse_MachineExists(machineId);
        if (payout == address(0)) revert PayPerUse_ZeroAddress();
        if (key.keyType != KeyType.None || trustMode == TrustMode.DeviceSigned) _checkKey(machineId, key);

        // Effect
        MachineData storage m = _machines[machineId];
        m.owner = msg.sender;
        m.trustMode = trustMode;
        m.keyVersion = 1;
        m.payout = payout;
        m.maxUnitsPerHour = maxUnitsPerHour;
        _storeKey(m, key);
        emit MachineRegistered(
            machineId, msg.sender, payout, trustMode, key.keyType, key.x, key.y, maxUnitsPerHour
        );
    }

    /// @inheritdoc IPayPerUse
    function rotateDeviceKey(bytes32 machineId, DeviceKey calldata key) external override {
        // Check
        MachineData storage m = _ownedMachine(machineId);
        _checkKey(machineId, key);
        // Effect
        uint32 keyVersion = m.keyVersion + 1;
        m.keyVersion = keyVersion;
        _storeKey(m, key);
        emit DeviceKeyRotated(machineId, keyVersion, key.keyType, key.x, key.y);
    }

    /// @inheritdoc IPayPerUse
    function revokeDeviceKey(bytes32 machineId) external override {
        MachineData storage m = _ownedMachine(machineId);
        m.keyType = KeyType.None;
        m.keyAddress = address(0);
        m.keyX = bytes32(0);
        m.keyY = bytes32(0);
        emit DeviceKeyRevoked(machineId, m.keyVersion);
    }

    /// @inheritdoc IPayPerUse
    function setPayout(bytes32 machineId, address payout) external override {
        MachineData storage m = _ownedMachine(machineId);
        if (payout == address(0)) revert PayPerUse_ZeroAddress();
        m.payout = payout;
        emit PayoutChanged(machineId, payout);
    }

    /// @inheritdoc IPayPerUse
    function transferMachine(bytes32 machineId, address newOwner) external override {
        MachineData storage m = _ownedMachine(machineId);
        if (newOwner == address(0)) revert PayPerUse_ZeroAddress();
        m.owner = newOwner;
        emit MachineTransferred(machineId, msg.sender, newOwner);
    }

    /// @inheritdoc IPayPerUse
    function setOracleSigners(address[] calldata signers, uint8 threshold)
        external
        override
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _setOracleSigners(signers, threshold);
    }

    /// @inheritdoc IPayPerUse
    function getMachine(bytes32 machineId) external view override returns (Machine memory) {
        MachineData storage m = _machines[machineId];
        return Machine({
            owner: m.owner,
            payout: m.payout,
            trustMode: m.trustMode,
            keyType: m.keyType,
            keyVersion: m.keyVersion,
            maxUnitsPerHour: m.maxUnitsPerHour,
            keyX: m.keyType == KeyType.Secp256k1 ? bytes32(uint256(uint160(m.keyAddress))) : m.keyX,
            keyY: m.keyY,
            tariffCount: m.tariffCount
        });
    }

    /// @inheritdoc IPayPerUse
    function getOracleSigners() external view override returns (address[] memory signers, uint8 threshold) {
        return (_oracleSigners, _oracleThreshold);
    }

    /*//////////////////////////////////////////////////////////////
                                TARIFFS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IPayPerUse
    function publishTariff(bytes32 machineId, TariffParams calldata params)
        external
        override
        returns (uint32 version)
    {
        // Check
        MachineData storage m = _ownedMachine(machineId);
        if (params.token == address(0)) revert PayPerUse_ZeroAddress();
        if (params.unitScale == 0) revert PayPerUse_ZeroUnitScale();
        if (params.unitScale > type(uint64).max) revert PayPerUse_ValueTooLarge(params.unitScale);
        if (params.price > type(uint96).max) revert PayPerUse_ValueTooLarge(params.price);
        if (params.baseFee > 0 && params.period == 0) revert PayPerUse_BaseFeeWithoutPeriod(params.baseFee);
        if (params.baseFee > type(uint96).max) revert PayPerUse_ValueTooLarge(params.baseFee);
        if (params.minimumCharge > type(uint96).max) revert PayPerUse_ValueTooLarge(params.minimumCharge);
        uint256 previous;
        for (uint256 i; i < params.tiers.length; ++i) {
            Tier calldata tier = params.tiers[i];
            if (tier.fromUnits <= previous) revert PayPerUse_TiersNotAscending(i, tier.fromUnits);
            if (tier.price > type(uint96).max) revert PayPerUse_ValueTooLarge(tier.price);
            previous = tier.fromUnits;
        }

        // Effect
        version = m.tariffCount + 1;
        m.tariffCount = version;
        TariffParams storage t = _tariffs[machineId][version];
        t.token = params.token;
        t.unit = params.unit;
        t.price = params.price;
        t.unitScale = params.unitScale;
        t.minimumCharge = params.minimumCharge;
        t.baseFee = params.baseFee;
        t.period = params.period;
        for (uint256 i; i < params.tiers.length; ++i) {
            t.tiers.push(params.tiers[i]);
        }
        emit TariffPublished(
            machineId,
            version,
            params.token,
            params.unit,
            params.price,
            params.unitScale,
            params.minimumCharge,
            params.baseFee,
            params.period,
            params.tiers
        );
    }

    /// @inheritdoc IPayPerUse
    function getTariff(bytes32 machineId, uint32 version) external view override returns (TariffParams memory) {
        return _existingTariff(machineId, version);
    }

    /// @inheritdoc IPayPerUse
    function costOf(bytes32 machineId, uint32 version, uint256 cumulativeUnits)
        external
        view
        override
        returns (uint256)
    {
        TariffParams storage t = _existingTariff(machineId, version);
        return TariffMath.tieredCost(cumulativeUnits, t.price, t.unitScale, t.tiers);
    }

    /*//////////////////////////////////////////////////////////////
                               AGREEMENTS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IPayPerUse
    function openAgreement(OpenParams calldata params) external override nonReentrant returns (uint256) {
        return _open(params);
    }

    /// @inheritdoc IPayPerUse
    function openAgreementWithPermit(OpenParams calldata params, Permit calldata permit)
        external
        override
        nonReentrant
        returns (uint256)
    {
        _permit(_existingTariff(params.machineId, params.tariffVersion).token, permit);
        return _open(params);
    }

    /// @inheritdoc IPayPerUse
    function topUp(uint256 agreementId, uint256 amount) external override nonReentrant {
        _topUp(agreementId, amount);
    }

    /// @inheritdoc IPayPerUse
    function topUpWithPermit(uint256 agreementId, uint256 amount, Permit calldata permit)
        external
        override
        nonReentrant
    {
        _permit(_openAgreement(agreementId).token, permit);
        _topUp(agreementId, amount);
    }

    /// @inheritdoc IPayPerUse
    function setMandate(uint256 agreementId, bytes32 mandateRef) external override {
        AgreementData storage a = _openAgreement(agreementId);
        if (msg.sender != a.lessee) revert PayPerUse_NotLessee(agreementId, msg.sender);
        a.mandateRef = mandateRef;
        emit MandateSet(agreementId, mandateRef);
    }

    /// @inheritdoc IPayPerUse
    function endAgreement(uint256 agreementId) external override {
        AgreementData storage a = _openAgreement(agreementId);
        if (msg.sender != a.lessee && msg.sender != _machines[a.machineId].owner) {
            revert PayPerUse_NotLesseeOrOwner(agreementId, msg.sender);
        }
        if (block.timestamp < a.endTime) {
            a.endTime = uint40(block.timestamp);
            a.closesAt = uint40(block.timestamp + a.disputeWindow);
        }
        emit AgreementEnded(agreementId, a.endTime);
    }

    /// @inheritdoc IPayPerUse
    function closeAgreement(uint256 agreementId) external override nonReentrant {
        // Check
        AgreementData storage a = _openAgreement(agreementId);
        uint256 closesAt = a.closesAt;
        if (block.timestamp <= closesAt) revert PayPerUse_DisputeWindowOpen(agreementId, closesAt);

        // Effect: the base fees of every started period up to the end, then the minimum charge.
        TariffParams storage t = _tariffs[a.machineId][a.tariffVersion];
        uint256 charge = _baseFees(a, t, a.endTime);
        uint256 charged = a.charged + charge;
        if (charged < t.minimumCharge) charge += t.minimumCharge - charged;
        if (charge > 0) {
            a.charged = _toUint96(a.charged + charge);
        }
        uint256 refund = _escrowOf(a);
        // The refund leaves the escrow: funded drops to what was charged, so escrow is zero and the tokens
        // held for the agreement are exactly its unsettled earnings.
        a.funded -= uint96(refund);
        a.status = AgreementStatus.Closed;
        emit AgreementClosed(agreementId, refund, a.charged);

        // Interaction: a lessee the token refuses to pay (e.g. blocklisted) keeps the refund as a withdrawable
        // balance, so the agreement still closes.
        if (refund > 0 && !IERC20(a.token).trySafeTransfer(a.lessee, refund)) {
            _earnings[a.lessee][a.token] += refund;
            emit PayoutFailed(a.lessee, a.token, refund);
        }
    }

    /// @inheritdoc IPayPerUse
    function getAgreement(uint256 agreementId) external view override returns (AgreementView memory v) {
        AgreementData storage a = _agreements[agreementId];
        v.machineId = a.machineId;
        v.lessee = a.lessee;
        v.token = a.token;
        v.tariffVersion = a.tariffVersion;
        v.status = a.status;
        v.startTime = a.startTime;
        v.endTime = a.endTime;
        v.disputeWindow = a.disputeWindow;
        v.escrow = _escrowOf(a);
        v.debt = _debtOf(a);
        v.cumulativeUnits = a.cumulativeUnits;
        v.lastReadingAt = a.lastReadingAt;
        v.totalCharged = a.charged;
        v.spendingCap = a.spendingCap;
        v.capPeriod = a.capPeriod;
        v.lowBalanceThreshold = a.lowBalanceThreshold;
        v.mandateRef = a.mandateRef;
    }

    /// @inheritdoc IPayPerUse
    function agreementCount() external view override returns (uint256) {
        return _agreementCount;
    }

    /*//////////////////////////////////////////////////////////////
                                METERING
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IPayPerUse
    function record(SignedReading[] calldata readings) external override {
        uint256 length = readings.length;
        if (length == 0) revert PayPerUse_EmptyBatch();
        for (uint256 i; i < length; ++i) {
            _record(readings[i].reading, TrustMode.DeviceSigned, readings[i].signature);
        }
    }

    /// @inheritdoc IPayPerUse
    function recordAttested(Reading[] calldata readings, bytes[] calldata signatures) external override {
        // Check: the batch carries at least `threshold` signatures by distinct registered oracle signers.
        uint256 length = readings.length;
        if (length == 0) revert PayPerUse_EmptyBatch();
        uint256 threshold = _oracleThreshold;
        if (signatures.length < threshold || threshold == 0) {
            revert PayPerUse_InsufficientAttestations(signatures.length, threshold);
        }
        bytes32 digest = _batchDigest(readings);
        address previous;
        for (uint256 i; i < signatures.length; ++i) {
            (address signer, ECDSA.RecoverError error,) = ECDSA.tryRecover(digest, signatures[i]);
            if (error != ECDSA.RecoverError.NoError || !_isOracleSigner[signer] || signer <= previous) {
                revert PayPerUse_InvalidAttestation(i, signer);
            }
            previous = signer;
        }

        // Effect
        for (uint256 i; i < length; ++i) {
            _record(readings[i], TrustMode.OracleAttested, msg.data[0:0]);
        }
    }

    /// @inheritdoc IPayPerUse
    function readingDigest(Reading calldata reading) external view override returns (bytes32) {
        return _hashTypedDataV4(_hashReading(reading));
    }

    /// @inheritdoc IPayPerUse
    function batchDigest(Reading[] calldata readings) external view override returns (bytes32) {
        return _batchDigest(readings);
    }

    /*//////////////////////////////////////////////////////////////
                               SETTLEMENT
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IPayPerUse
    function earnings(address payee, address token) external view override returns (uint256) {
        return _earnings[payee][token];
    }

    /// @inheritdoc IPayPerUse
    function unsettledEarnings(uint256 agreementId) external view override returns (uint256) {
        return _unsettledOf(_agreements[agreementId]);
    }

    /// @inheritdoc IPayPerUse
    function withdraw(address token) external override nonReentrant {
        // Check
        uint256 amount = _earnings[msg.sender][token];
        if (amount == 0) revert PayPerUse_NothingToWithdraw(msg.sender, token);
        // Effect
        _earnings[msg.sender][token] = 0;
        emit EarningsPaid(msg.sender, token, amount);
        // Interaction
        IERC20(token).safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IPayPerUse
    function settle(uint256[] calldata agreementIds) external override nonReentrant {
        uint256 length = agreementIds.length;
        address[] memory payees = new address[](length);
        address[] memory tokens = new address[](length);

        // Effect: credit every agreement's accrued earnings to its payee, and request direct debits for debt.
        for (uint256 i; i < length; ++i) {
            uint256 agreementId = agreementIds[i];
            AgreementData storage a = _agreements[agreementId];
            if (a.status == AgreementStatus.None) revert PayPerUse_UnknownAgreement(agreementId);
            address payee = _machines[a.machineId].payout;
            uint256 accrued = _unsettledOf(a);
            if (accrued > 0) {
                // paidOut + accrued = min(charged, funded) <= 2^96 - 1, so the cast cannot truncate.
                a.paidOut += uint96(accrued);
                _earnings[payee][a.token] += accrued;
            }
            payees[i] = payee;
            tokens[i] = a.token;
            uint256 debt = _debtOf(a);
            if (debt > 0 && a.mandateRef != bytes32(0) && a.openDebitId == 0) {
                _requestDirectDebit(agreementId, a, debt);
            }
        }

        // Interaction: pay each payee once; a failing transfer (e.g. a blocklisted payee) keeps that balance.
        for (uint256 i; i < length; ++i) {
            address payee = payees[i];
            address token = tokens[i];
            uint256 amount = _earnings[payee][token];
            if (amount == 0) continue;
            _earnings[payee][token] = 0;
            if (IERC20(token).trySafeTransfer(payee, amount)) {
                emit EarningsPaid(payee, token, amount);
            } else {
                _earnings[payee][token] = amount;
                emit PayoutFailed(payee, token, amount);
            }
        }
    }

    /// @inheritdoc IPayPerUse
    function getDirectDebit(uint256 debitId) external view override returns (DirectDebit memory) {
        return _debits[debitId];
    }

    /// @inheritdoc IPayPerUse
    function confirmDirectDebit(uint256 debitId) external override onlyRole(BANK_ROLE) nonReentrant {
        // Check
        DirectDebit storage d = _debits[debitId];
        if (d.status == DebitStatus.None) revert PayPerUse_UnknownDebit(debitId);
        if (d.status != DebitStatus.Requested) revert PayPerUse_DebitNotOpen(debitId);
        AgreementData storage a = _agreements[d.agreementId];

        // Effect
        d.status = DebitStatus.Collected;
        a.openDebitId = 0;
        _addFunds(a, d.amount);
        emit DirectDebitCollected(debitId, d.agreementId, d.amount);
        _reinstateIfPaid(d.agreementId, a);

        // Interaction
        _pullExact(d.token, d.amount);
    }

    /// @inheritdoc IPayPerUse
    function reportDirectDebitReturn(uint256 debitId, bytes4 reasonCode) external override onlyRole(BANK_ROLE) {
        // Check
        DirectDebit storage d = _debits[debitId];
        DebitStatus status = d.status;
        if (status == DebitStatus.None) revert PayPerUse_UnknownDebit(debitId);
        if (status != DebitStatus.Requested && status != DebitStatus.Collected) {
            revert PayPerUse_DebitNotOpen(debitId);
        }
        if (!_isReasonCode(reasonCode)) revert PayPerUse_InvalidReasonCode(reasonCode);
        uint256 agreementId = d.agreementId;
        AgreementData storage a = _agreements[agreementId];

        // Effect
        d.status = DebitStatus.Returned;
        d.returnReason = reasonCode;
        bool afterCollection = status == DebitStatus.Collected;
        if (afterCollection) {
            // The collected money went back to the debtor: the debt re-opens, and the bank is credited what the
            // agreement still holds of it (tokens held = funded - paidOut). Any part already paid out to the
            // owner cannot be clawed back here and is the bank's to recover.
            // The part already paid out to the owner is owed to the bank from the agreement's next funding: while
            // `funded` is below `paidOut`, new money goes to the bank (see _addFunds), so nobody is paid twice.
            uint256 funded = a.funded;
            uint256 paidOut = a.paidOut;
            uint256 held = funded > paidOut ? funded - paidOut : 0;
            uint256 reclaimed = d.amount < held ? d.amount : held;
            a.funded = uint96(funded >= d.amount ? funded - d.amount : 0);
            if (reclaimed < d.amount) a.refundCreditor = msg.sender;
            if (reclaimed > 0) _earnings[msg.sender][d.token] += reclaimed;
        } else {
            a.openDebitId = 0;
        }
        emit DirectDebitReturned(debitId, agreementId, d.amount, reasonCode, afterCollection);
        if (a.status == AgreementStatus.Active) {
            a.status = AgreementStatus.Suspended;
            emit AgreementSuspended(agreementId, debitId, reasonCode);
        }
    }

    /// @inheritdoc IPayPerUse
    function payDebt(uint256 agreementId, uint256 amount) external override nonReentrant {
        // Check
        AgreementData storage a = _agreements[agreementId];
        if (a.status == AgreementStatus.None) revert PayPerUse_UnknownAgreement(agreementId);
        if (amount == 0) revert PayPerUse_ZeroAmount();
        uint256 debt = _debtOf(a);
        if (amount > debt) revert PayPerUse_AmountAboveDebt(agreementId, amount, debt);

        // Effect
        _addFunds(a, amount);
        emit DebtRepaid(agreementId, msg.sender, amount, debt - amount);
        _reinstateIfPaid(agreementId, a);

        // Interaction
        _pullExact(a.token, amount);
    }

    /*//////////////////////////////////////////////////////////////
                           INTERNAL: METERING
    //////////////////////////////////////////////////////////////*/

    /// @dev Charges one reading or skips it with a reason. Never reverts for a bad reading.
    function _record(Reading calldata r, TrustMode mode, bytes calldata signature) private {
        uint256 agreementId = r.agreementId;
        AgreementData storage a = _agreements[agreementId];

        // Check: the agreement, its machine and mode, its time window, then the meter.
        AgreementStatus status = a.status;
        if (status == AgreementStatus.None) return _skip(r, SkipReason.UnknownAgreement);
        if (a.machineId != r.machineId) return _skip(r, SkipReason.MachineMismatch);
        if (a.trustMode != mode) return _skip(r, SkipReason.WrongTrustMode);
        if (status != AgreementStatus.Active) return _skip(r, SkipReason.AgreementNotActive);
        uint256 timestamp = r.timestamp;
        if (timestamp > block.timestamp + FUTURE_TOLERANCE) return _skip(r, SkipReason.FutureTimestamp);
        if (timestamp < a.startTime) return _skip(r, SkipReason.BeforeStart);
        if (timestamp > a.endTime) return _skip(r, SkipReason.AfterEnd);
        if (block.timestamp > a.closesAt) return _skip(r, SkipReason.TooLate);
        uint256 previousUnits = a.cumulativeUnits;
        // A meter beyond 96 bits cannot be stored; it is refused like a reading that does not advance.
        if (r.cumulativeUnits <= previousUnits || r.cumulativeUnits > type(uint96).max) {
            return _skip(r, SkipReason.StaleReading);
        }
        if (mode == TrustMode.DeviceSigned) {
            MachineData storage m = _machines[r.machineId];
            KeyType keyType = m.keyType;
            if (keyType == KeyType.None) return _skip(r, SkipReason.NoDeviceKey);
            if (!_verifyDevice(r, signature, keyType, m)) return _skip(r, SkipReason.BadSignature);
        }

        // Effect
        _charge(agreementId, a, r, previousUnits);
    }

    function _charge(uint256 agreementId, AgreementData storage a, Reading calldata r, uint256 previousUnits)
        private
    {
        uint256 newUnits = r.cumulativeUnits;
        uint8 flags = a.flags;
        uint256 charge;
        (uint256 price, uint256 unitScale) = (a.price, a.unitScale);
        if (flags & (FLAG_TIERED | FLAG_BASE_FEE) == 0) {
            charge = TariffMath.flatCost(newUnits, price, unitScale) - TariffMath.flatCost(previousUnits, price, unitScale);
        } else {
            TariffParams storage t = _tariffs[a.machineId][a.tariffVersion];
            charge = TariffMath.tieredCost(newUnits, price, unitScale, t.tiers)
                - TariffMath.tieredCost(previousUnits, price, unitScale, t.tiers);
            if (flags & FLAG_BASE_FEE != 0) charge += _baseFees(a, t, r.timestamp);
        }
        if (flags & FLAG_CAP != 0) charge = _applyCap(agreementId, a, charge, r.timestamp);

        uint256 funded = a.funded;
        uint256 chargedBefore = a.charged;
        uint256 chargedAfter = chargedBefore + charge;
        uint64 lastReadingAt = a.lastReadingAt;
        if (r.timestamp > lastReadingAt) lastReadingAt = r.timestamp;
        // newUnits < 2^96 was checked in _record.
        (a.cumulativeUnits, a.charged, a.lastReadingAt) = (uint96(newUnits), _toUint96(chargedAfter), lastReadingAt);

        uint256 escrowAfter = funded > chargedAfter ? funded - chargedAfter : 0;
        uint256 debtAfter = chargedAfter > funded ? chargedAfter - funded : 0;
        emit UsageRecorded(
            agreementId, r.machineId, newUnits, newUnits - previousUnits, charge, escrowAfter, debtAfter, r.timestamp
        );
        uint256 threshold = a.lowBalanceThreshold;
        if (threshold > 0 && escrowAfter < threshold) {
            uint256 escrowBefore = funded > chargedBefore ? funded - chargedBefore : 0;
            if (escrowBefore >= threshold) emit LowBalance(agreementId, escrowAfter, threshold);
        }
    }

    /// @dev Base fees of the periods started since the agreement began, up to `until`, not yet charged.
    function _baseFees(AgreementData storage a, TariffParams storage t, uint256 until) private returns (uint256) {
        uint256 period = t.period;
        if (period == 0 || t.baseFee == 0 || until < a.startTime) return 0;
        uint256 started = (until - a.startTime) / period + 1;
        // A period that would start exactly at (or after) the end is not part of the agreement.
        uint256 inAgreement = (uint256(a.endTime) - a.startTime + period - 1) / period;
        if (started > inAgreement) started = inAgreement;
        uint256 charged = a.baseFeePeriodsCharged;
        if (started <= charged) return 0;
        a.baseFeePeriodsCharged = uint32(started);
        return (started - charged) * t.baseFee;
    }

    /// @dev Limits `charge` to what is left of the current cap period's allowance; the excess is forgiven.
    function _applyCap(uint256 agreementId, AgreementData storage a, uint256 charge, uint256 timestamp)
        private
        returns (uint256)
    {
        uint256 capPeriod = a.capPeriod;
        uint256 periodIndex = timestamp > a.startTime ? (timestamp - a.startTime) / capPeriod : 0;
        uint256 spent = a.spentInPeriod;
        if (periodIndex > a.capPeriodIndex) {
            a.capPeriodIndex = uint64(periodIndex);
            spent = 0;
        }
        uint256 cap = a.spendingCap;
        uint256 allowed = cap > spent ? cap - spent : 0;
        if (charge > allowed) {
            emit SpendingCapReached(
                agreementId, uint64(a.startTime + a.capPeriodIndex * capPeriod), cap, charge - allowed
            );
            charge = allowed;
        }
        // spent + charge <= cap < 2^96, so the cast cannot truncate.
        a.spentInPeriod = uint96(spent + charge);
        return charge;
    }

    function _skip(Reading calldata r, SkipReason reason) private {
        emit ReadingSkipped(r.agreementId, r.machineId, reason, r.cumulativeUnits);
    }

    function _verifyDevice(Reading calldata r, bytes calldata signature, KeyType keyType, MachineData storage m)
        private
        view
        returns (bool)
    {
        bytes32 digest = _hashTypedDataV4(_hashReading(r));
        if (keyType == KeyType.Secp256k1) {
            (address signer, ECDSA.RecoverError error,) = ECDSA.tryRecoverCalldata(digest, signature);
            return error == ECDSA.RecoverError.NoError && signer == m.keyAddress;
        }
        if (signature.length != 64) return false;
        // P-256 keys sign the digest with ECDSA-SHA256, as secure elements and standard tools do.
        return P256.verify(
            sha256(abi.encodePacked(digest)), bytes32(signature[0:32]), bytes32(signature[32:64]), m.keyX, m.keyY
        );
    }

    function _hashReading(Reading calldata r) private pure returns (bytes32) {
        return keccak256(abi.encode(READING_TYPEHASH, r.agreementId, r.machineId, r.cumulativeUnits, r.timestamp));
    }

    function _batchDigest(Reading[] calldata readings) private view returns (bytes32) {
        uint256 length = readings.length;
        bytes32[] memory hashes = new bytes32[](length);
        for (uint256 i; i < length; ++i) {
            hashes[i] = _hashReading(readings[i]);
        }
        return _hashTypedDataV4(keccak256(abi.encode(READING_BATCH_TYPEHASH, keccak256(abi.encodePacked(hashes)))));
    }

    /*//////////////////////////////////////////////////////////////
                        INTERNAL: AGREEMENTS AND MONEY
    //////////////////////////////////////////////////////////////*/

    function _open(OpenParams calldata p) private returns (uint256 agreementId) {
        // Check
        TariffParams storage t = _existingTariff(p.machineId, p.tariffVersion);
        if (p.endTime <= block.timestamp) revert PayPerUse_EndTimeInPast(p.endTime, block.timestamp);
        if (p.spendingCap > 0 && p.capPeriod == 0) revert PayPerUse_CapWithoutPeriod(p.spendingCap);

        // Effect
        agreementId = ++_agreementCount;
        AgreementData storage a = _agreements[agreementId];
        a.machineId = p.machineId;
        a.funded = _toUint96(p.deposit);
        a.lowBalanceThreshold = _toUint96(p.lowBalanceThreshold);
        a.startTime = uint40(block.timestamp);
        a.status = AgreementStatus.Active;
        a.trustMode = _machines[p.machineId].trustMode;
        uint8 flags;
        if (t.tiers.length > 0) flags |= FLAG_TIERED;
        if (t.baseFee > 0) flags |= FLAG_BASE_FEE;
        if (p.spendingCap > 0) flags |= FLAG_CAP;
        a.flags = flags;
        // Tariff values were bounded when published (price < 2^96, unitScale < 2^64).
        a.price = uint96(t.price);
        a.unitScale = uint64(t.unitScale);
        a.tariffVersion = p.tariffVersion;
        a.endTime = _toUint40(p.endTime);
        a.closesAt = _toUint40(uint256(p.endTime) + p.disputeWindow);
        a.lessee = msg.sender;
        a.disputeWindow = p.disputeWindow;
        a.token = t.token;
        a.capPeriod = p.capPeriod;
        a.spendingCap = _toUint96(p.spendingCap);
        a.mandateRef = p.mandateRef;
        emit AgreementOpened(
            agreementId, p.machineId, msg.sender, p.tariffVersion, t.token, p.deposit, p.endTime, p.disputeWindow
        );
        if (p.mandateRef != bytes32(0)) emit MandateSet(agreementId, p.mandateRef);

        // Interaction
        if (p.deposit > 0) _pullExact(t.token, p.deposit);
    }

    function _topUp(uint256 agreementId, uint256 amount) private {
        // Check
        AgreementData storage a = _openAgreement(agreementId);
        if (amount == 0) revert PayPerUse_ZeroAmount();

        // Effect
        uint256 debtBefore = _debtOf(a);
        _addFunds(a, amount);
        emit EscrowToppedUp(agreementId, msg.sender, amount, _escrowOf(a), amount < debtBefore ? amount : debtBefore);
        _reinstateIfPaid(agreementId, a);

        // Interaction
        _pullExact(a.token, amount);
    }

    function _requestDirectDebit(uint256 agreementId, AgreementData storage a, uint256 amount) private {
        uint256 debitId = ++_debitCount;
        uint64 dueDate = uint64(block.timestamp) + DEBIT_LEAD_TIME;
        _debits[debitId] = DirectDebit({
            agreementId: agreementId,
            token: a.token,
            amount: amount,
            mandateRef: a.mandateRef,
            dueDate: dueDate,
            status: DebitStatus.Requested,
            returnReason: bytes4(0)
        });
        // Debit ids count up from 1 and stay far below 2^128.
        a.openDebitId = uint128(debitId);
        emit DirectDebitRequested(debitId, agreementId, a.mandateRef, a.token, amount, dueDate);
    }

    function _reinstateIfPaid(uint256 agreementId, AgreementData storage a) private {
        if (a.status == AgreementStatus.Suspended && a.charged <= a.funded) {
            a.status = AgreementStatus.Active;
            emit AgreementReinstated(agreementId);
        }
    }

    /// @dev Pulls exactly `amount` from the caller; refuses tokens that deliver less (fee on transfer).
    function _pullExact(address token, uint256 amount) private {
        uint256 balanceBefore = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - balanceBefore;
        if (received != amount) revert PayPerUse_FeeOnTransferToken(token, amount, received);
    }

    /// @dev Applies an EIP-2612 permit; a permit that fails (e.g. already used by a front-runner) is ignored, and
    /// the transfer that follows still needs a sufficient allowance.
    function _permit(address token, Permit calldata permit) private {
        try IERC20Permit(token).permit(
            msg.sender, address(this), permit.value, permit.deadline, permit.v, permit.r, permit.s
        ) {} catch {}
    }

    function _escrowOf(AgreementData storage a) private view returns (uint256) {
        (uint256 funded, uint256 charged) = (a.funded, a.charged);
        return funded > charged ? funded - charged : 0;
    }

    function _debtOf(AgreementData storage a) private view returns (uint256) {
        (uint256 funded, uint256 charged) = (a.funded, a.charged);
        return charged > funded ? charged - funded : 0;
    }

    function _unsettledOf(AgreementData storage a) private view returns (uint256) {
        (uint256 funded, uint256 charged) = (a.funded, a.charged);
        uint256 earned = funded < charged ? funded : charged;
        uint256 paidOut = a.paidOut;
        // After a refunded collection `funded` may lie below what was already paid out: nothing is owed then.
        return earned > paidOut ? earned - paidOut : 0;
    }

    /// @dev Adds money to an agreement. While a refunded collection left `funded` below `paidOut`, the money that
    /// refills that gap belongs to the bank that refunded it (it was paid to the owner once already).
    function _addFunds(AgreementData storage a, uint256 amount) private {
        uint256 fundedBefore = a.funded;
        uint256 fundedAfter = fundedBefore + amount;
        uint256 paidOut = a.paidOut;
        if (fundedBefore < paidOut) {
            uint256 toBank = (fundedAfter < paidOut ? fundedAfter : paidOut) - fundedBefore;
            _earnings[a.refundCreditor][a.token] += toBank;
        }
        a.funded = _toUint96(fundedAfter);
    }

    /*//////////////////////////////////////////////////////////////
                          INTERNAL: LOOK-UPS
    //////////////////////////////////////////////////////////////*/

    function _ownedMachine(bytes32 machineId) private view returns (MachineData storage m) {
        m = _machines[machineId];
        if (m.owner == address(0)) revert PayPerUse_UnknownMachine(machineId);
        if (m.owner != msg.sender) revert PayPerUse_NotMachineOwner(machineId, msg.sender);
    }

    function _existingTariff(bytes32 machineId, uint32 version) private view returns (TariffParams storage) {
        if (version == 0 || version > _machines[machineId].tariffCount) {
            revert PayPerUse_UnknownTariff(machineId, version);
        }
        return _tariffs[machineId][version];
    }

    function _openAgreement(uint256 agreementId) private view returns (AgreementData storage a) {
        a = _agreements[agreementId];
        if (a.status == AgreementStatus.None) revert PayPerUse_UnknownAgreement(agreementId);
        if (a.status == AgreementStatus.Closed) revert PayPerUse_AgreementIsClosed(agreementId);
    }

    function _checkKey(bytes32 machineId, DeviceKey calldata key) private pure {
        bool valid;
        if (key.keyType == KeyType.Secp256k1) {
            valid = key.x != bytes32(0) && uint256(key.x) >> 160 == 0 && key.y == bytes32(0);
        } else if (key.keyType == KeyType.P256) {
            valid = P256.isValidPublicKey(key.x, key.y);
        }
        if (!valid) revert PayPerUse_InvalidDeviceKey(machineId, key.keyType);
    }

    function _storeKey(MachineData storage m, DeviceKey calldata key) private {
        m.keyType = key.keyType;
        if (key.keyType == KeyType.Secp256k1) {
            m.keyAddress = address(uint160(uint256(key.x)));
            m.keyX = bytes32(0);
            m.keyY = bytes32(0);
        } else {
            m.keyAddress = address(0);
            m.keyX = key.x;
            m.keyY = key.y;
        }
    }

    function _setOracleSigners(address[] memory signers, uint8 threshold) private {
        if (threshold == 0 || threshold > signers.length) revert PayPerUse_InvalidThreshold(threshold, signers.length);
        for (uint256 i; i < _oracleSigners.length; ++i) {
            _isOracleSigner[_oracleSigners[i]] = false;
        }
        for (uint256 i; i < signers.length; ++i) {
            address signer = signers[i];
            if (signer == address(0) || _isOracleSigner[signer]) revert PayPerUse_InvalidOracleSigner(signer);
            _isOracleSigner[signer] = true;
        }
        _oracleSigners = signers;
        _oracleThreshold = threshold;
        emit OracleSignersChanged(signers, threshold);
    }

    function _isReasonCode(bytes4 code) private pure returns (bool) {
        for (uint256 i; i < 4; ++i) {
            bytes1 c = code[i];
            bool alnum = (c >= "0" && c <= "9") || (c >= "A" && c <= "Z");
            if (!alnum) return false;
        }
        return true;
    }

    function _toUint40(uint256 value) private pure returns (uint40) {
        if (value > type(uint40).max) revert PayPerUse_ValueTooLarge(value);
        return uint40(value);
    }

    function _toUint96(uint256 value) private pure returns (uint96) {
        if (value > type(uint96).max) revert PayPerUse_ValueTooLarge(value);
        return uint96(value);
    }
}
