"""Network traffic: flow decoders (NetFlow v5/v9, IPFIX, sFlow v5) and what is built on them."""
