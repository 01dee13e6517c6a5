// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";

/// @title MockHostileToken
/// @notice A token that misbehaves on demand, to prove the contracts defend themselves: it can
/// answer `false` instead of reverting (old ERC-20s do), or call back into a target during a
/// transfer (re-entrancy through a token hook). 6 decimals; anyone may mint.
contract MockHostileToken is ERC20 {
    enum Mode {
        Normal,
        ReturnFalse,
        Reenter
    }

    Mode public mode;
    address public reentryTarget;
    bytes public reentryCall;

    constructor() ERC20("Mock Hostile Token", "HOST") {}

    /// @notice Mints `amount` (token smallest units) to `to`.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Chooses the misbehaviour; for `Reenter`, what to call during each transfer.
    function setMode(Mode newMode, address target, bytes calldata data) external {
        mode = newMode;
        reentryTarget = target;
        reentryCall = data;
    }

    /// @inheritdoc ERC20
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @inheritdoc ERC20
    function transfer(address to, uint256 value) public override returns (bool) {
        if (mode == Mode.ReturnFalse) return false;
        _reenter();
        return super.transfer(to, value);
    }

    /// @inheritdoc ERC20
    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        if (mode == Mode.ReturnFalse) return false;
        _reenter();
        return super.transferFrom(from, to, value);
    }

    function _reenter() private {
        if (mode == Mode.Reenter) Address.functionCall(reentryTarget, reentryCall);
    }
}
