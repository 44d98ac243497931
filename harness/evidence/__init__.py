"""Evidence parsers: sysrq task/workqueue dumps and kernel-report events found in console logs."""
