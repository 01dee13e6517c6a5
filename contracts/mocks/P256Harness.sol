// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.30;

import {P256} from "@openzeppelin/contracts/utils/cryptography/P256.sol";

/// @title P256Harness
/// @notice Test-only access to OpenZeppelin's P-256 verification paths, so tests can prove a
/// signature made off-chain verifies through the EIP-7951 precompile and through the Solidity
/// fallback separately, and whether the chain has the precompile at all.
contract P256Harness {
    /// @notice The path `P256.verify` takes: precompile when present, Solidity otherwise.
    function verify(bytes32 h, bytes32 r, bytes32 s, bytes32 x, bytes32 y) external view returns (bool) {
        return P256.verify(h, r, s, x, y);
    }

    /// @notice The precompile only; reverts with `MissingPrecompile` when the chain has none.
    function verifyNative(bytes32 h, bytes32 r, bytes32 s, bytes32 x, bytes32 y) external view returns (bool) {
        return P256.verifyNative(h, r, s, x, y);
    }

    /// @notice The Solidity implementation only.
    function verifySolidity(bytes32 h, bytes32 r, bytes32 s, bytes32 x, bytes32 y) external view returns (bool) {
        return P256.verifySolidity(h, r, s, x, y);
    }

    /// @notice Whether address 0x100 answers like the EIP-7951 precompile (a known-valid input).
    function hasPrecompile() external view returns (bool present) {
        (bool ok, bytes memory out) = address(0x100).staticcall(
            abi.encode(
                // Known-valid vector with small r and s, as OpenZeppelin's P256 uses for detection.
                bytes32(0xbb5a52f42f9c9261ed4361f59422a1e30036e7c32b270c8807a419feca605023),
                bytes32(uint256(0x0000000000000000000000000000000000000000000000000000000000000005)),
                bytes32(uint256(0x0000000000000000000000000000000000000000000000000000000000000001)),
                bytes32(0xa71af64de5126a4a4e02b7922d66ce9415ce88a4c9d25514d91082c8725ac957),
                bytes32(0x5d47723c8fbe580bb369fec9c2665d8e30a435b9932645482e7c9f11e872296b)
            )
        );
        present = ok && out.length == 32 && abi.decode(out, (uint256)) == 1;
    }
}
