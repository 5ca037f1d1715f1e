"""Domain operations, one module per stage. Each public function runs inside the caller's
session (one transaction per business action) and audits every state change it makes."""
