-- An example tenant user, made on the server's first start (an empty data volume): it sees
-- tenant `acme`'s rows only (`herald simulate` makes that tenant), through the role and row
-- policies of Herald's migrations 30-33 (the role is made here too: this runs before them).
-- Its tenant is a CONST setting, so the user cannot change it. Change the password.
CREATE ROLE IF NOT EXISTS herald_tenant;
CREATE USER IF NOT EXISTS tenant_acme IDENTIFIED WITH sha256_password BY 'acme-reader' SETTINGS SQL_herald_tenant = 'acme' CONST;
GRANT herald_tenant TO tenant_acme;
ALTER USER tenant_acme DEFAULT ROLE herald_tenant;
