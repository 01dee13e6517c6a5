// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title MockEURC
/// @notice A well-behaved euro stablecoin for tests and local networks: 6 decimals like EURC,
/// EIP-2612 `permit`, minted by its owner.
contract MockEURC is ERC20, ERC20Permit, Ownable {
    constructor(address initialOwner) ERC20("Mock Euro Coin", "EURC") ERC20Permit("Mock Euro Coin") Ownable(initialOwner) {}

    /// @notice Mints `amount` (token smallest units) to `to`.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }

    /// @inheritdoc ERC20
    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
