// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title MockBlocklistToken
/// @notice A token whose admin can block addresses, as USDC and USDT can: any transfer, mint or
/// burn from or to a blocked address reverts. 6 decimals; the owner mints and keeps the blocklist.
contract MockBlocklistToken is ERC20, Ownable {
    /// @notice `account` is blocked and cannot send or receive.
    error MockBlocklistToken_Blocked(address account);

    /// @notice `account` was blocked (`blocked` true) or unblocked.
    event BlocklistChanged(address indexed account, bool blocked);

    /// @notice Whether an address is blocked.
    mapping(address account => bool blocked) public isBlocked;

    constructor(address initialOwner) ERC20("Mock Blocklist Token", "BLK") Ownable(initialOwner) {}

    /// @notice Mints `amount` (token smallest units) to `to`.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }

    /// @notice Blocks or unblocks `account`.
    function setBlocked(address account, bool blocked) external onlyOwner {
        isBlocked[account] = blocked;
        emit BlocklistChanged(account, blocked);
    }

    /// @inheritdoc ERC20
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (isBlocked[from]) revert MockBlocklistToken_Blocked(from);
        if (isBlocked[to]) revert MockBlocklistToken_Blocked(to);
        super._update(from, to, value);
    }
}
