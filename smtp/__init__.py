"""SMTP role: inbound MX and submission (aiosmtpd adapters), policy, outbound SMTP client."""
