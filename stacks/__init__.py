"""CDK stacks and constructs for DocuChat, one construct per capability."""
