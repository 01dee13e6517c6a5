// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title MockFeeToken
/// @notice A token that takes a fee on every transfer (not on mint or burn): the recipient gets
/// `amount - amount * feeBps / 10_000`, the fee goes to the owner. 6 decimals; the owner mints.
contract MockFeeToken is ERC20, Ownable {
    /// @notice The fee in basis points is above 100 %.
    error MockFeeToken_FeeTooHigh(uint256 feeBps);

    /// @notice Fee in basis points of each transferred amount.
    uint256 public feeBps;

    constructor(address initialOwner, uint256 initialFeeBps) ERC20("Mock Fee Token", "FEE") Ownable(initialOwner) {
        _setFee(initialFeeBps);
    }

    /// @notice Mints `amount` (token smallest units) to `to`.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }

    /// @notice Changes the transfer fee (basis points).
    function setFee(uint256 newFeeBps) external onlyOwner {
        _setFee(newFeeBps);
    }

    /// @inheritdoc ERC20
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function _setFee(uint256 newFeeBps) private {
        if (newFeeBps > 10_000) revert MockFeeToken_FeeTooHigh(newFeeBps);
        feeBps = newFeeBps;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0) || feeBps == 0) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = (value * feeBps) / 10_000;
        super._update(from, owner(), fee);
        super._update(from, to, value - fee);
    }
}
