"""crossbook.oms: the order manager (lifecycle table, ClOrdID chains), its FIX gateway and reports."""
