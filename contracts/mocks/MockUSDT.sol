// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.30;

/// @title MockUSDT
/// @notice A token written the way Tether's USDT is: `transfer`, `transferFrom` and `approve`
/// return nothing, and `approve` refuses to change a non-zero allowance to another non-zero
/// value. Callers that expect a `bool` return value revert when decoding; SafeERC20 works.
/// 6 decimals; the owner mints.
contract MockUSDT {
    /// @notice The caller is not the owner.
    error MockUSDT_NotOwner(address caller);
    /// @notice The sender's balance is below the amount.
    error MockUSDT_InsufficientBalance(address from, uint256 balance, uint256 amount);
    /// @notice The spender's allowance is below the amount.
    error MockUSDT_InsufficientAllowance(address spender, uint256 allowance, uint256 amount);
    /// @notice A non-zero allowance must be set to zero before it is set to another value.
    error MockUSDT_AllowanceNotZero(address spender, uint256 allowance);
    /// @notice Transfers to the zero address are refused.
    error MockUSDT_ZeroAddress();

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    address private immutable _OWNER;
    uint256 public totalSupply;
    mapping(address account => uint256 balance) public balanceOf;
    mapping(address holder => mapping(address spender => uint256 amount)) public allowance;

    constructor(address initialOwner) {
        _OWNER = initialOwner;
    }

    /// @notice The token's name.
    function name() external pure returns (string memory) {
        return "Mock Tether USD";
    }

    /// @notice The token's symbol.
    function symbol() external pure returns (string memory) {
        return "USDT";
    }

    /// @notice 6 decimals, as USDT.
    function decimals() external pure returns (uint8) {
        return 6;
    }

    /// @notice The account allowed to mint.
    function owner() external view returns (address) {
        return _OWNER;
    }

    /// @notice Mints `amount` (token smallest units) to `to`.
    function mint(address to, uint256 amount) external {
        if (msg.sender != _OWNER) revert MockUSDT_NotOwner(msg.sender);
        if (to == address(0)) revert MockUSDT_ZeroAddress();
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    /// @notice Moves `amount` from the caller to `to`. Returns nothing, as USDT does.
    function transfer(address to, uint256 amount) external {
        _move(msg.sender, to, amount);
    }

    /// @notice Moves `amount` from `from` to `to` using the caller's allowance. Returns nothing.
    function transferFrom(address from, address to, uint256 amount) external {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < amount) revert MockUSDT_InsufficientAllowance(msg.sender, allowed, amount);
            allowance[from][msg.sender] = allowed - amount;
        }
        _move(from, to, amount);
    }

    /// @notice Sets the caller's allowance for `spender`. Returns nothing; refuses non-zero to non-zero.
    function approve(address spender, uint256 amount) external {
        uint256 current = allowance[msg.sender][spender];
        if (amount != 0 && current != 0) revert MockUSDT_AllowanceNotZero(spender, current);
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
    }

    function _move(address from, address to, uint256 amount) private {
        if (to == address(0)) revert MockUSDT_ZeroAddress();
        uint256 balance = balanceOf[from];
        if (balance < amount) revert MockUSDT_InsufficientBalance(from, balance, amount);
        unchecked {
            // Cannot underflow: checked just above. Cannot overflow: the sum of balances is totalSupply.
            balanceOf[from] = balance - amount;
            balanceOf[to] += amount;
        }
        emit Transfer(from, to, amount);
    }
}
