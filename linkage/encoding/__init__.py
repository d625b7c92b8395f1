"""What runs at the agency: normalising, the schema, CLK encoding and hardening."""
