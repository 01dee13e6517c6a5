// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {PayPerUse} from "../PayPerUse.sol";
import {MockEURC} from "../mocks/MockEURC.sol";
import {DeviceKey, KeyType, OpenParams, Reading, SignedReading, TariffParams, Tier, TrustMode} from "../types/DataTypes.sol";
import {TestBase} from "./utils/Vm.sol";

/// @notice Fuzz tests of device signature checks: a reading is charged only with a valid low-s signature by the
/// machine's current key over exactly that reading.
contract SignaturesTest is TestBase {
    uint256 internal constant SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141;
    uint256 internal constant P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551;
    uint256 internal constant DEVICE_KEY = 0xD15EA5E;
    uint256 internal constant P256_KEY = 0xC0FFEE;
    bytes32 internal constant K1_MACHINE = keccak256("fuzz-k1");
    bytes32 internal constant P256_MACHINE = keccak256("fuzz-p256");

    PayPerUse internal ppu;
    MockEURC internal token;
    uint256 internal k1Agreement;
    uint256 internal p256Agreement;

    function setUp() public {
        ppu = new PayPerUse(address(this), address(this), new address[](0), 0, 2 days);
        token = new MockEURC(address(this));
        token.mint(address(this), 1e30);
        token.approve(address(ppu), type(uint256).max);
        ppu.registerMachine(
            K1_MACHINE,
            address(0xBEEF),
            TrustMode.DeviceSigned,
            0,
            DeviceKey(KeyType.Secp256k1, bytes32(uint256(uint160(vm.addr(DEVICE_KEY)))), bytes32(0))
        );
        (uint256 x, uint256 y) = vm.publicKeyP256(P256_KEY);
        ppu.registerMachine(
            P256_MACHINE, address(0xBEEF), TrustMode.DeviceSigned, 0, DeviceKey(KeyType.P256, bytes32(x), bytes32(y))
        );
        k1Agreement = _open(K1_MACHINE);
        p256Agreement = _open(P256_MACHINE);
    }

    function _open(bytes32 machineId) internal returns (uint256) {
        ppu.publishTariff(machineId, TariffParams(address(token), "kWh", 250_000, 1_000, new Tier[](0), 0, 0, 0));
        return ppu.openAgreement(
            OpenParams(machineId, 1, 1e24, uint64(block.timestamp + 365 days), 0, 0, 0, 1 days, bytes32(0))
        );
    }

    function _reading(uint256 agreementId, bytes32 machineId, uint256 units) internal view returns (Reading memory) {
        return Reading(agreementId, machineId, units, uint64(block.timestamp));
    }

    function _recordOne(Reading memory r, bytes memory signature) internal returns (uint256 cumulative) {
        SignedReading[] memory batch = new SignedReading[](1);
        batch[0] = SignedReading(r, signature);
        ppu.record(batch);
        return ppu.getAgreement(r.agreementId).cumulativeUnits;
    }

    function testFuzz_Secp256k1_ValidSignatureCharges(uint64 units) public {
        vm.assume(units > 0);
        Reading memory r = _reading(k1Agreement, K1_MACHINE, units);
        (uint8 v, bytes32 sr, bytes32 ss) = vm.sign(DEVICE_KEY, ppu.readingDigest(r));
        assertEq(_recordOne(r, abi.encodePacked(sr, ss, v)), units, "charged");
    }

    function testFuzz_Secp256k1_OtherSignerSkipped(uint256 otherKey, uint64 units) public {
        otherKey = bound(otherKey, 1, SECP256K1_N - 1);
        vm.assume(otherKey != DEVICE_KEY && units > 0);
        Reading memory r = _reading(k1Agreement, K1_MACHINE, units);
        (uint8 v, bytes32 sr, bytes32 ss) = vm.sign(otherKey, ppu.readingDigest(r));
        assertEq(_recordOne(r, abi.encodePacked(sr, ss, v)), 0, "skipped");
    }

    function testFuzz_Secp256k1_HighSSkipped(uint64 units) public {
        vm.assume(units > 0);
        Reading memory r = _reading(k1Agreement, K1_MACHINE, units);
        (uint8 v, bytes32 sr, bytes32 ss) = vm.sign(DEVICE_KEY, ppu.readingDigest(r));
        // The same signature, mirrored to the upper half of the order: valid for ecrecover, refused here.
        bytes32 highS = bytes32(SECP256K1_N - uint256(ss));
        uint8 flippedV = v == 27 ? 28 : 27;
        assertEq(_recordOne(r, abi.encodePacked(sr, highS, flippedV)), 0, "malleable skipped");
    }

    function testFuzz_Secp256k1_TamperedReadingSkipped(uint64 signedUnits, uint64 submittedUnits) public {
        vm.assume(signedUnits > 0 && submittedUnits > 0 && signedUnits != submittedUnits);
        Reading memory r = _reading(k1Agreement, K1_MACHINE, signedUnits);
        (uint8 v, bytes32 sr, bytes32 ss) = vm.sign(DEVICE_KEY, ppu.readingDigest(r));
        r.cumulativeUnits = submittedUnits;
        assertEq(_recordOne(r, abi.encodePacked(sr, ss, v)), 0, "tampered skipped");
    }

    function testFuzz_P256_ValidSignatureCharges(uint64 units) public {
        vm.assume(units > 0);
        Reading memory r = _reading(p256Agreement, P256_MACHINE, units);
        (bytes32 sr, bytes32 ss) = vm.signP256(P256_KEY, sha256(abi.encodePacked(ppu.readingDigest(r))));
        if (uint256(ss) > P256_N / 2) ss = bytes32(P256_N - uint256(ss));
        assertEq(_recordOne(r, abi.encodePacked(sr, ss)), units, "charged");
    }

    function testFuzz_P256_HighSOrOtherKeySkipped(uint256 otherKey, uint64 units) public {
        otherKey = bound(otherKey, 1, P256_N - 1);
        vm.assume(otherKey != P256_KEY && units > 0);
        Reading memory r = _reading(p256Agreement, P256_MACHINE, units);
        bytes32 message = sha256(abi.encodePacked(ppu.readingDigest(r)));
        (bytes32 sr, bytes32 ss) = vm.signP256(P256_KEY, message);
        bytes32 highS = uint256(ss) > P256_N / 2 ? ss : bytes32(P256_N - uint256(ss));
        assertEq(_recordOne(r, abi.encodePacked(sr, highS)), 0, "high s skipped");
        (bytes32 or_, bytes32 os) = vm.signP256(otherKey, message);
        if (uint256(os) > P256_N / 2) os = bytes32(P256_N - uint256(os));
        assertEq(_recordOne(r, abi.encodePacked(or_, os)), 0, "other key skipped");
    }
}
