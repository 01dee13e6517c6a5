// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {PayPerUse} from "../../PayPerUse.sol";
import {MockEURC} from "../../mocks/MockEURC.sol";
import {
    AgreementStatus,
    AgreementView,
    DeviceKey,
    KeyType,
    OpenParams,
    Reading,
    SignedReading,
    TariffParams,
    Tier,
    TrustMode
} from "../../types/DataTypes.sol";
import {Vm} from "../utils/Vm.sol";

/// @notice Drives PayPerUse through random sequences of the money paths, and keeps the ghost values the
/// invariants compare against.
contract Handler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 public constant PRICE = 250_000;
    uint256 public constant UNIT_SCALE = 1_000;
    uint256 internal constant ORACLE_KEY = 0xA11CE;
    uint256 internal constant MACHINES = 3;

    PayPerUse public immutable ppu;
    MockEURC public immutable token;
    bytes32[] public machineIds;
    uint256[] internal deviceKeys;
    address[] public payees;
    bytes32 public oracleMachine;

    uint256[] public agreementIds;
    /// @dev Highest meter seen per agreement after any call: the meter must never fall below it.
    mapping(uint256 agreementId => uint256) public ghostMaxUnits;
    bool public ghostMeterWentBackwards;
    /// @dev Set if re-submitting an already charged reading changed what was charged.
    bool public ghostChargedTwice;
    SignedReading internal lastSigned;
    bool internal haveLastSigned;

    constructor() {
        address[] memory signers = new address[](1);
        signers[0] = vm.addr(ORACLE_KEY);
        ppu = new PayPerUse(address(this), address(this), signers, 1, 2 days);
        token = new MockEURC(address(this));
        token.mint(address(this), 1e30);
        token.approve(address(ppu), type(uint256).max);
        for (uint256 i; i < MACHINES; ++i) {
            bytes32 machineId = keccak256(abi.encode("invariant-machine", i));
            uint256 key = 0x1000 + i;
            address payee = address(uint160(0xFEE0 + i));
            ppu.registerMachine(
                machineId,
                payee,
                TrustMode.DeviceSigned,
                0,
                DeviceKey(KeyType.Secp256k1, bytes32(uint256(uint160(vm.addr(key)))), bytes32(0))
            );
            _publish(machineId);
            machineIds.push(machineId);
            deviceKeys.push(key);
            payees.push(payee);
        }
        oracleMachine = keccak256("invariant-oracle-machine");
        ppu.registerMachine(oracleMachine, address(0xFEEF), TrustMode.OracleAttested, 0, DeviceKey(KeyType.None, 0, 0));
        _publish(oracleMachine);
        payees.push(address(0xFEEF));
        payees.push(address(this));
    }

    function _publish(bytes32 machineId) internal {
        ppu.publishTariff(machineId, TariffParams(address(token), "kWh", PRICE, UNIT_SCALE, new Tier[](0), 0, 0, 0));
    }

    function agreementCount() external view returns (uint256) {
        return agreementIds.length;
    }

    function payeeCount() external view returns (uint256) {
        return payees.length;
    }

    function _pick(uint256 seed) internal view returns (uint256 agreementId, bool ok) {
        if (agreementIds.length == 0) return (0, false);
        return (agreementIds[seed % agreementIds.length], true);
    }

    function _track() internal {
        for (uint256 i; i < agreementIds.length; ++i) {
            uint256 id = agreementIds[i];
            uint256 units = ppu.getAgreement(id).cumulativeUnits;
            if (units < ghostMaxUnits[id]) ghostMeterWentBackwards = true;
            else ghostMaxUnits[id] = units;
        }
    }

    // ---- actions -------------------------------------------------------------------------------------------

    function open(uint256 machineSeed, uint256 deposit, uint256 threshold, bool withMandate) external {
        uint256 index = machineSeed % (MACHINES + 1);
        bytes32 machineId = index == MACHINES ? oracleMachine : machineIds[index];
        deposit %= 1e12;
        uint256 id = ppu.openAgreement(
            OpenParams(
                machineId,
                1,
                deposit,
                uint64(block.timestamp + 30 days),
                0,
                0,
                threshold % 1e12,
                1 days,
                withMandate ? keccak256(abi.encode("mandate", machineSeed)) : bytes32(0)
            )
        );
        agreementIds.push(id);
        _track();
    }

    function topUp(uint256 seed, uint256 amount) external {
        (uint256 id, bool ok) = _pick(seed);
        if (!ok || ppu.getAgreement(id).status == AgreementStatus.Closed) return;
        ppu.topUp(id, 1 + (amount % 1e12));
        _track();
    }

    function recordDevice(uint256 seed, uint256 added, bool stale) external {
        (uint256 id, bool ok) = _pick(seed);
        if (!ok) return;
        AgreementView memory a = ppu.getAgreement(id);
        (bool found, uint256 keyIndex) = _deviceKeyOf(a.machineId);
        if (!found) return;
        uint256 units = stale ? a.cumulativeUnits / 2 : a.cumulativeUnits + (added % 1e9);
        Reading memory r = Reading(id, a.machineId, units, uint64(block.timestamp));
        (uint8 v, bytes32 sr, bytes32 ss) = vm.sign(deviceKeys[keyIndex], ppu.readingDigest(r));
        SignedReading[] memory batch = new SignedReading[](1);
        batch[0] = SignedReading(r, abi.encodePacked(sr, ss, v));
        ppu.record(batch);
        lastSigned = batch[0];
        haveLastSigned = true;
        _track();
    }

    function recordAttested(uint256 seed, uint256 added) external {
        (uint256 id, bool ok) = _pick(seed);
        if (!ok) return;
        AgreementView memory a = ppu.getAgreement(id);
        Reading[] memory readings = new Reading[](1);
        readings[0] = Reading(id, a.machineId, a.cumulativeUnits + (added % 1e9), uint64(block.timestamp));
        (uint8 v, bytes32 sr, bytes32 ss) = vm.sign(ORACLE_KEY, ppu.batchDigest(readings));
        bytes[] memory signatures = new bytes[](1);
        signatures[0] = abi.encodePacked(sr, ss, v);
        ppu.recordAttested(readings, signatures);
        _track();
    }

    /// @dev Re-submits the last device-signed reading: it must charge nothing the second time.
    function replay() external {
        if (!haveLastSigned) return;
        uint256 id = lastSigned.reading.agreementId;
        uint256 chargedBefore = ppu.getAgreement(id).totalCharged;
        SignedReading[] memory batch = new SignedReading[](1);
        batch[0] = lastSigned;
        ppu.record(batch);
        if (ppu.getAgreement(id).totalCharged != chargedBefore) ghostChargedTwice = true;
        _track();
    }

    function settle(uint256 seed) external {
        (uint256 id, bool ok) = _pick(seed);
        if (!ok) return;
        uint256[] memory ids = new uint256[](1);
        ids[0] = id;
        ppu.settle(ids);
        _track();
    }

    function collectOrReturn(uint256 debitSeed, bool collect) external {
        uint256 debitId = 1 + (debitSeed % 8);
        if (ppu.getDirectDebit(debitId).agreementId == 0) return;
        uint8 status = uint8(ppu.getDirectDebit(debitId).status);
        if (collect && status == 1) ppu.confirmDirectDebit(debitId);
        else if (!collect && (status == 1 || status == 2)) ppu.reportDirectDebitReturn(debitId, "AC04");
        _track();
    }

    function payDebt(uint256 seed) external {
        (uint256 id, bool ok) = _pick(seed);
        if (!ok) return;
        uint256 debt = ppu.getAgreement(id).debt;
        if (debt == 0) return;
        ppu.payDebt(id, debt);
        _track();
    }

    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + (seconds_ % 10 days));
        _track();
    }

    function close(uint256 seed) external {
        (uint256 id, bool ok) = _pick(seed);
        if (!ok) return;
        AgreementView memory a = ppu.getAgreement(id);
        if (a.status == AgreementStatus.Closed || block.timestamp <= uint256(a.endTime) + a.disputeWindow) return;
        ppu.closeAgreement(id);
        _track();
    }

    function withdrawAll() external {
        if (ppu.earnings(address(this), address(token)) > 0) ppu.withdraw(address(token));
        _track();
    }

    function _deviceKeyOf(bytes32 machineId) internal view returns (bool, uint256) {
        for (uint256 i; i < machineIds.length; ++i) {
            if (machineIds[i] == machineId) return (true, i);
        }
        return (false, 0);
    }
}
